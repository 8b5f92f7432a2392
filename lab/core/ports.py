"""Agents' ephemeral ports (shared/reference/softphone.md), in one place for the model, the
policy check and the probe."""

from __future__ import annotations

#: what each OS picks a socket's source port from by default: Windows (since Vista) and macOS
#: use the IANA dynamic range; Linux its kernel's default ``net.ipv4.ip_local_port_range``,
#: 32768-60999
EPHEMERAL: dict[str, tuple[int, int]] = {"windows": (49152, 65535), "linux": (32768, 60999),
                                         "macos": (49152, 65535)}

#: the return ranges AWS's softphone requirements tell a firewall to open, in AWS's wording
#: (Linux to 61000: one port above what the kernel uses); the firewall presets write these
AWS_RETURN_RANGES: dict[str, tuple[int, int]] = {"windows": (49152, 65535), "linux": (32768, 61000)}
