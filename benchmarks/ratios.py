"""Print each benchmark's ratio to its plain alternative from a --benchmark-json report."""

import json
import sys

report = json.load(open(sys.argv[1]))
print(f"{'benchmark':45s} {'ours (s)':>10s} {'plain (s)':>10s} {'ratio':>7s}  plain alternative")
for b in report["benchmarks"]:
    info = b["extra_info"]
    if "plain_s" in info:
        print(f"{b['name']:45s} {info['ours_s']:10.4f} {info['plain_s']:10.4f} {info['ratio']:7.3f}  {info['plain']}")
    elif "peak_kb_1e5" in info:
        print(
            f"{b['name']:45s} peak RSS 1e3: {info['peak_kb_1e3'] / 1024:.0f} MiB, 1e5: {info['peak_kb_1e5'] / 1024:.0f} MiB, ratio {info['ratio']}"
        )
