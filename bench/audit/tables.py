"""The tables of an audit report (header + rows), shared by every renderer."""

from __future__ import annotations

from typing import Any

MARK = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}
SHOWN_PAIRS = 20


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _est(e: dict[str, Any] | None, pct: bool = False) -> str:
    if not e or e.get("value") is None:
        return "n/a"
    if pct:
        return f"{_pct(e['value'])} [{_pct(e['low'])}, {_pct(e['high'])}]"
    return f"{e['value']:.2f} [{e['low']:.2f}, {e['high']:.2f}]"


def card_tables(report: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """Header + rows of each table of the report (shared by md, rich and HTML)."""
    d = report["dataset"]
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    tables["Classes"] = (
        ["class", "images", "share %", "groups"],
        [[c["name"], c["n"], _pct(c["fraction"]), c["groups"]] for c in d["classes"]],
    )
    tables["Resolution and format per class"] = (
        ["class", "format", "size", "chroma", "images", "share %"],
        [[f["class"], f["format"], f["size"], f["subsampling"], f["n"], _pct(f["fraction"])]
         for f in d["formats"]],
    )  # fmt: skip
    tables["Findings"] = (
        ["finding", "level", "verdict"],
        [[f["title"], MARK[f["level"]], f["verdict"]] for f in report["findings"]],
    )
    for f in report["findings"]:
        res = f.get("result")
        if f["id"] == "acquisition" and res:
            rows = []
            for name, key in (("file properties", "file_properties"),
                              ("all properties", "all_properties")):  # fmt: skip
                r = res.get(key)
                if r:
                    rows.append([name, _est(r["auc"]), _est(r["balanced_accuracy"], True),
                                 r["n_units"], f"{r['split']} {r['folds']}-fold"])  # fmt: skip
            for r in res["per_family"]:
                rows.append([f"  {r['family']}", _est(r["auc"]), _est(r["balanced_accuracy"], True),
                             r["n_units"], f"{r['split']} {r['folds']}-fold"])  # fmt: skip
            tables["Acquisition shortcut test (predict the label from properties alone)"] = (
                ["properties", "AUC [95% CI]", "balanced acc. % [95% CI]", "units", "split"],
                rows,
            )
        if f["id"].startswith("source:") and res:
            rows = []
            for c in res["comparisons"]:
                p = c["properties"].get("all_properties")
                x = c["features"]
                rows.append([c["subject"], c["n_a"], c["n_b"],
                             _est(p["auc"]) if p else "n/a",
                             _est(x["auc"]) if x else "n/a", MARK[c["level"]]])  # fmt: skip
            tables[f"Source check: {res['a']} vs {res['b']}"] = (
                ["compared", f"n {res['a']}", f"n {res['b']}", "AUC properties",
                 "AUC features", "level"], rows,
            )  # fmt: skip
        if f["id"] == "leakage" and res:
            tables["Leakage delta (quick Model 1)"] = (
                ["split", "balanced acc. % [95% CI]", "samples", "units", "classifier"],
                [
                    [f"paper-leaky {res['folds']}-fold [LEAKY]",
                     _est(res["leaky_balanced_accuracy"], True), res["n_samples"], res["n_units"],
                     f"{res['backbone']} + {res['classifier']}"],
                    [f"grouped {res['folds']}-fold", _est(res["grouped_balanced_accuracy"], True),
                     res["n_samples"], res["n_units"], f"augmentation: {res['augmentation']}"],
                    ["difference (leaky - grouped)", _est(res["delta"], True), "", "", "points"],
                ],
            )  # fmt: skip
        if f["id"] == "duplicates" and f["pairs"]:
            tables[f"Duplicate pairs (first {min(SHOWN_PAIRS, f['n_pairs'])} of {f['n_pairs']})"] = (
                ["kind", "method", "distance", "image A", "image B"],
                [[p["kind"], p["method"], f"{p['distance']:.3g}", f"{p['rel_a']} ({p['class_a']})",
                  f"{p['rel_b']} ({p['class_b']})"] for p in f["pairs"][:SHOWN_PAIRS]],
            )  # fmt: skip
    return tables


def headline(report: dict[str, Any]) -> list[str]:
    """The lines above the tables."""
    d = report["dataset"]
    ids = "patient ids" if d["patient_ids"] else f"no patient ids (groups: {d['groups_from']})"
    s = report["settings"]
    return [
        f"{d['name']} ({d['loader']}: {d['path']}): {d['n_images']} images, "
        f"{d['n_groups']} groups, {ids}, {len(d['classes'])} classes"
        + (f", {d['n_excluded']} excluded" if d["n_excluded"] else ""),
        f"overall: {MARK[report['level']]}; backbone {s['backbone'] or 'none'}; "
        f"seed {s['seed']}; CIs: 95% cluster bootstrap over groups; "
        f"audit took {report['timing_s']['total']:.1f} s",
    ]
