"""What the benchmark scripts share: the CPU they ran on, and the generated blocks of a doc.

A script writes its table between `<!-- BEGIN NAME -->` and `<!-- END NAME -->` in a markdown
file (appended the first time), so a rerun replaces its own numbers and nothing else.

Example:

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "doc.md")
>>> replace_block(path, "demo", "| a |")
>>> replace_block(path, "demo", "| b |")
>>> open(path).read()
'\\n<!-- BEGIN demo -->\\n| b |\\n<!-- END demo -->\\n'
"""

import os
import platform
import re


def replace_block(path, name, table):
    """Puts `table` between the markers of block `name` in `path` (appended when absent)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = open(path).read() if os.path.exists(path) else ""
    block = f"{begin}\n{table}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def cpu_model():
    """The CPU's model name (/proc/cpuinfo), e.g. "AMD EPYC 9B14"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
