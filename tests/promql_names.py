#!/usr/bin/python3
"""Metric names in the PromQL expressions of the ops files, checked against a real scrape.

  promql_names.py names FILE...                 the metric names FILE's expressions use
  promql_names.py check SCRAPE FILE...          fails unless every one of them is a sample in
                                                SCRAPE (Prometheus text format)
  promql_names.py exprs FILE...                 every expression, one JSON string per line

FILE is a Grafana dashboard (.json: panel targets and templating queries) or a Prometheus rule
file (.yml: groups[].rules[].expr). Names that Prometheus itself makes, not slimkvd (`up`), are
allowed where the rules use them.
"""
import json
import re
import sys

import yaml

# Series Prometheus generates per target rather than reading them from the scrape.
PROMETHEUS_SERIES = {"up"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2"}


def expressions(path):
    """(where, expr) for every PromQL expression in a dashboard or rule file."""
    with open(path) as f:
        if path.endswith(".json"):
            dash = json.load(f)
            out = []

            def walk(panels):
                for p in panels:
                    for t in p.get("targets", []):
                        if t.get("expr"):
                            out.append((f"panel '{p.get('title')}' {t.get('refId')}", t["expr"]))
                    walk(p.get("panels", []))

            walk(dash.get("panels", []))
            for v in dash.get("templating", {}).get("list", []):
                q = v.get("query")
                q = q.get("query") if isinstance(q, dict) else q
                if v.get("type") == "query" and q:
                    out.append((f"variable '{v['name']}'", q))
            return out
        rules = yaml.safe_load(f)
        return [(f"rule '{r.get('alert') or r.get('record')}'", r["expr"])
                for g in rules["groups"] for r in g["rules"]]


def names(expr):
    """The metric names an expression selects."""
    label_values = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][\w:]*).*\)\s*", expr, re.S)
    if label_values:
        return {label_values.group(1)}
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regexes
    e = re.sub(r"\{[^}]*\}", " ", e)               # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)              # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    found = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", e):
        rest = e[m.end():].lstrip()
        if m.group(0) in KEYWORDS or rest.startswith("("):  # keyword or function call
            continue
        found.add(m.group(0))
    return found


def scraped_samples(path):
    samples = set()
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                samples.add(re.match(r"[A-Za-z_:][\w:]*", line).group(0))
    return samples


def main(argv):
    if len(argv) < 3 or argv[1] not in ("names", "check", "exprs"):
        sys.exit(__doc__)
    if argv[1] == "exprs":
        for path in argv[2:]:
            for _, expr in expressions(path):
                print(json.dumps(expr))
        return 0
    if argv[1] == "names":
        used = set()
        for path in argv[2:]:
            for _, expr in expressions(path):
                used |= names(expr)
        print("\n".join(sorted(used)))
        return 0
    exported = scraped_samples(argv[2])
    missing, count, used = {}, 0, set()
    for path in argv[3:]:
        allowed = exported | (PROMETHEUS_SERIES if not path.endswith(".json") else set())
        for where, expr in expressions(path):
            count += 1
            found = names(expr)
            if not found:
                missing.setdefault("(no metric name)", []).append(f"{path}: {where}")
            used |= found
            for name in found - allowed:
                missing.setdefault(name, []).append(f"{path}: {where}")
    if missing:
        for name, places in sorted(missing.items()):
            print(f"FAIL: {name} is not exported by slimkvd; used by {'; '.join(places)}")
        return 1
    print(f"{count} expressions use {len(used)} metric names, all exported by slimkvd")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
