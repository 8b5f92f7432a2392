"""Scenario mode of ``icelab serve SCENARIO``: the lab of a scenario, with its timeline as a
list of steps the trainer plays one at a time, each narrated by its claim and the pass/fail
text of the expectations about it; the verdict once the last one has played."""

from __future__ import annotations

from .live import LiveLab


class ScenarioLab(LiveLab):
    def __init__(self, network, publish, scenario):
        super().__init__(network, publish, scenario)
        self.played: list[dict] = []

    def scenario_info(self) -> dict | None:
        s = self.scenario
        return {"name": s.name, "title": s.title, "claim": s.claim, "variant": s.variant,
                "steps": [{"index": i, "at": st.at, "action": st.action, "name": st.name}
                          for i, st in enumerate(s.steps)],
                "played": self.played}
