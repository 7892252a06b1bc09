#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes OUT, a C file holding docs/openapi.yaml converted to compact JSON
as the byte array handler_openapi_json (NUL-terminated) and its length
handler_openapi_json_len, so that an installed tokend serves its OpenAPI
document without the source tree. Invoked by CMakeLists.txt:
    python3 embed_openapi.py docs/openapi.yaml build/openapi.c
Needs PyYAML (Debian: python3-yaml)."""

import json
import sys

import yaml


def main(src, out):
    with open(src, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    # allow_nan=False: a NaN is not JSON; a date YAML parsed as one is an
    # error here (json cannot dump it) rather than a string in disguise.
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    data = text.encode("utf-8")
    lines = ["/* Generated from docs/openapi.yaml by cmake/embed_openapi.py; do not edit. */",
             "#include <stddef.h>", "",
             "extern const char handler_openapi_json[];",
             "extern const size_t handler_openapi_json_len;",
             "const char handler_openapi_json[] ="]
    # Every byte as \xHH: no escape can swallow the character after it.
    for i in range(0, len(data), 32):
        lines.append('\t"' + "".join(f"\\x{b:02x}" for b in data[i:i + 32]) + '"')
    lines[-1] += ";"
    lines.append(f"const size_t handler_openapi_json_len = {len(data)};")
    with open(out, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: embed_openapi.py OPENAPI.yaml OUT.c")
    main(sys.argv[1], sys.argv[2])
