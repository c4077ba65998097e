#!/usr/bin/env python3
"""connroute.conf(5) in scdoc, generated from docs/config.md (the one reference of
every key, checked against the key table by tests/unit/test_config.c).

    python3 scripts/man-conf.py docs/config.md > docs/man/connroute.conf.5.scd

`make test` regenerates it and fails when docs/man/connroute.conf.5.scd differs
(scripts/check-man.sh): edit docs/config.md, then run `make man-sources`."""
import re
import sys

HEAD = """connroute.conf(5)

; Generated from docs/config.md by scripts/man-conf.py: edit that file, then
; run `make man-sources`.

# NAME

connroute.conf - connroute configuration file: lanes, limits, timeouts, socket options

# SYNOPSIS

*/etc/connroute.conf*, or the file named by *CONNROUTE\\_CONFIG*

"""

TAIL = """
# SEE ALSO

*connroute*(1), *connroute*(7), *connroute*(3)
"""


def inline(t):
    """Markdown inline text to scdoc: escapes first, then `code` and **bold** as
    bold, *x* as underline."""
    out = []
    for i, part in enumerate(re.split(r"(`[^`]*`)", t)):
        if i % 2:  # code
            code = part[1:-1].replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")
            out.append("*" + code + "*" if code.strip() else code)
            continue
        part = part.replace("\\", "\\\\")
        part = re.sub(r"\*\*([^*]+)\*\*", lambda m: "\x01" + m.group(1) + "\x01", part)
        part = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", lambda m: "\x02" + m.group(1) + "\x02", part)
        part = part.replace("*", "\\*").replace("_", "\\_")
        part = part.replace("\x01", "*").replace("\x02", "_")
        out.append(part)
    return "".join(out)


def main(path):
    lines = open(path, encoding="utf-8").read().splitlines()
    out = [HEAD]
    i = 0
    in_keys = False
    # the page's title and the line under it are the man page's NAME
    while i < len(lines) and not lines[i].startswith("## "):
        if lines[i].startswith("# "):
            i += 1
            continue
        if lines[i].strip() and "# DESCRIPTION\n\n" not in out:
            out.append("# DESCRIPTION\n\n")
        out.append(inline(lines[i]) + "\n")
        i += 1
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            i += 1
            out.append("```\n" + "\n".join(block) + "\n```\n")
            continue
        if line.strip() == "---":
            i += 1
            continue
        m = re.match(r"^(#{2,3}) (.*)", line)
        if m:
            title = m.group(2)
            # a key's section: the next non-blank line starts with **NAME**
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            is_key = j < len(lines) and lines[j].startswith("**NAME**")
            if is_key:
                if not in_keys:
                    out.append("# KEYS\n\n")
                    in_keys = True
                out.append("## " + inline(title).replace("*", "") + "\n")
            else:
                in_keys = False
                out.append("# " + inline(title).upper().replace("*", "") + "\n")
            i += 1
            continue
        num = re.match(r"^\d+\. ", line)
        if line.startswith("- ") or num:
            item = [line[num.end():] if num else line[2:]]
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                item.append(lines[i].strip())
                i += 1
            out.append((". " if num else "- ") + inline(" ".join(item)) + "\n")
            continue
        if line.startswith("**") and line.split("**")[1] in ("NAME", "SYNOPSIS", "DESCRIPTION", "DEFAULT", "EXAMPLE"):
            # one key field: a paragraph of its own
            para = [line]
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i].startswith("**"):
                para.append(lines[i])
                i += 1
            out.append(inline(" ".join(para)) + "\n\n")
            continue
        out.append(inline(line) + "\n")
        i += 1
    out.append(TAIL)
    text = "".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text)
    sys.stdout.write(text)


main(sys.argv[1] if len(sys.argv) > 1 else "docs/config.md")
