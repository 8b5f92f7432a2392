"""``icelab serve``: a live lab in the browser for trainers (docs/serve.md).

live.py is the lab side (read and changed through lab.net and lab.scenario), app.py the
web side (Starlette: the page, the JSON API, server-sent events, the token and origin
checks), static/ the page itself: plain HTML, JavaScript and CSS shipped with the package,
no CDN and no build step, so that it works in a classroom without internet.
"""
