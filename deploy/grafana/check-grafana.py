#!/usr/bin/env python3
"""Static checks of the Grafana provisioning and dashboards (no Grafana needed).

  deploy/grafana/check-grafana.py [--promtool PATH]

Checks: every file parses (YAML, JSON); data source uids are unique; every data source a
dashboard, panel, target or template variable names exists in the provisioning with the same
type; dashboard uids and panel ids are unique; every query has a refId (unique in its panel) and
an expression; the dashboard provider's path is where docker-compose.yml mounts
deploy/grafana/dashboards. With --promtool, every expression (Grafana variables replaced by
sample values) must also parse as PromQL. Exit status 0 when all pass, 1 otherwise.
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
errors = []


def err(msg):
    errors.append(msg)
    print(f"check-grafana: {msg}", file=sys.stderr)


def load_yaml(path):
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        err(f"{path}: invalid YAML: {e}")
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--promtool")
    args = ap.parse_args()

    datasources = {}
    for f in sorted((HERE / "provisioning/datasources").glob("*.y*ml")):
        doc = load_yaml(f) or {}
        for ds in doc.get("datasources", []):
            uid = ds.get("uid")
            if not uid:
                err(f"{f}: data source {ds.get('name')!r} has no uid")
            elif uid in datasources:
                err(f"{f}: data source uid {uid!r} defined twice")
            else:
                datasources[uid] = ds.get("type")
    if not datasources:
        err("no data source provisioned")

    paths = []
    for f in sorted((HERE / "provisioning/dashboards").glob("*.y*ml")):
        doc = load_yaml(f) or {}
        for p in doc.get("providers", []):
            paths.append(p.get("options", {}).get("path"))
    compose = load_yaml(REPO / "docker-compose.yml") or {}
    mounts = compose.get("services", {}).get("grafana", {}).get("volumes", [])
    mounted = [m.split(":")[1] for m in mounts if m.startswith("./deploy/grafana/dashboards:")]
    if not paths:
        err("no dashboard provider")
    for p in paths:
        if p not in mounted:
            err(f"dashboard provider path {p!r} is not where docker-compose.yml mounts "
                f"deploy/grafana/dashboards ({mounted})")

    exprs = []
    uids = set()
    dashboards = sorted((HERE / "dashboards").glob("*.json"))
    if not dashboards:
        err("no dashboard JSON")
    for f in dashboards:
        try:
            d = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            err(f"{f}: invalid JSON: {e}")
            continue
        for key in ("uid", "title", "panels", "schemaVersion"):
            if key not in d:
                err(f"{f}: no {key!r}")
        if d.get("uid") in uids:
            err(f"{f}: dashboard uid {d.get('uid')!r} used twice")
        uids.add(d.get("uid"))

        def check_ds(where, ds):
            if ds is None:
                return
            if isinstance(ds, str):
                err(f"{f}: {where}: data source by name ({ds!r}); use {{type, uid}}")
                return
            uid = ds.get("uid", "")
            if uid.startswith("$"):
                return
            if uid not in datasources:
                err(f"{f}: {where}: unknown data source uid {uid!r}")
            elif ds.get("type") != datasources[uid]:
                err(f"{f}: {where}: type {ds.get('type')!r} but {uid!r} is {datasources[uid]!r}")

        for v in d.get("templating", {}).get("list", []):
            check_ds(f"variable {v.get('name')}", v.get("datasource"))
            q = v.get("query")
            if isinstance(q, dict):
                q = q.get("query")
            if v.get("type") == "query" and q:
                m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
                exprs.append((f"{f.name} variable {v.get('name')}", m.group(1) if m else q))
        ids = set()
        panels = list(d.get("panels", []))
        for p in list(panels):
            panels.extend(p.get("panels", []))
        for p in panels:
            where = f"panel {p.get('id')} {p.get('title')!r}"
            if p.get("id") in ids:
                err(f"{f}: {where}: duplicate panel id")
            ids.add(p.get("id"))
            if "gridPos" not in p:
                err(f"{f}: {where}: no gridPos")
            if p.get("type") == "row":
                continue
            check_ds(where, p.get("datasource"))
            refs = set()
            if not p.get("targets"):
                err(f"{f}: {where}: no queries")
            for t in p.get("targets", []):
                check_ds(f"{where} query {t.get('refId')}", t.get("datasource"))
                if not t.get("refId") or t.get("refId") in refs:
                    err(f"{f}: {where}: missing or duplicate refId")
                refs.add(t.get("refId"))
                if not t.get("expr", "").strip():
                    err(f"{f}: {where}: empty expression")
                exprs.append((f"{f.name} {where} {t.get('refId')}", t.get("expr", "")))

    if args.promtool and exprs:
        rules = {"groups": [{"name": "grafana-exprs", "rules": []}]}
        for i, (where, e) in enumerate(exprs):
            e = e.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            e = re.sub(r"\$\{?\w+\}?", ".*", e)
            rules["groups"][0]["rules"].append({"record": f"grafana_expr_{i}", "expr": e})
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as tmp:
            yaml.safe_dump(rules, tmp)
        r = subprocess.run([args.promtool, "check", "rules", tmp.name],
                           capture_output=True, text=True)
        pathlib.Path(tmp.name).unlink()
        if r.returncode != 0:
            err("an expression does not parse as PromQL:\n" + r.stdout + r.stderr)

    n = len(exprs)
    if errors:
        print(f"check-grafana: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-grafana: OK ({len(dashboards)} dashboard(s), {len(datasources)} data source(s), "
          f"{n} expression(s){' parsed by promtool' if args.promtool else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
