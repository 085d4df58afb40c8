"""Stage `report`: one offline HTML page with the whole study's figures, numbers and verdict.

dvc repro report        # writes reports/index.html (open it in any browser, no network needed)
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from oiplab import tracking
from oiplab.backend import versions
from oiplab.config import Config, tracking_uri
from oiplab.io import atomic_write_text
from oiplab.render import save_figure
from oiplab.render.training import seeds_history_figure
from oiplab.report.html import figure, page, run_link, table, text
from oiplab.stages import stage_main
from oiplab.stages.activations import output_dir as activations_dir
from oiplab.stages.compare import output_dir as compare_dir
from oiplab.stages.oip import output_dir as oip_dir
from oiplab.stages.precursor import output_dir as precursor_dir
from oiplab.stages.train import model_dir

REPORT_FILE = "index.html"
LOCAL_UI = "http://127.0.0.1:5000"  # where `make mlflow-ui` serves the embedded store


def report_path(cfg: Config) -> Path:
    return Path(cfg.paths.reports) / REPORT_FILE


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _metrics(cfg: Config, name: str) -> dict | None:
    return _json(Path(cfg.paths.metrics) / f"{name}.json")


def _seed_rows(cfg: Config, stage: str, keys: tuple[str, ...]) -> list[tuple]:
    """One table row per seed from `metrics/<stage>_seed_<n>.json`: the seed, then `keys`."""
    rows = []
    for s in cfg.seeds:
        m = _metrics(cfg, f"{stage}_seed_{s}")
        if m:
            rows.append((s, *(m.get(k) for k in keys)))
    return rows


class RunLinks:
    """The latest MLflow run of each (stage, seed), as links into the tracking UI."""

    def __init__(self, cfg: Config):
        self.runs: dict[tuple[str, str | None], tuple[str, str]] = {}
        self.base = None
        if not cfg.tracking.enabled:
            return
        from mlflow.tracking import MlflowClient

        uri = tracking_uri(cfg)
        self.base = uri.rstrip("/") if uri.startswith("http") else LOCAL_UI
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        if experiment is None:
            return
        for run in client.search_runs(
            [experiment.experiment_id], order_by=["attributes.start_time ASC"], max_results=5000
        ):
            key = (run.data.tags.get("oiplab.stage", ""), run.data.tags.get("oiplab.seed"))
            self.runs[key] = (experiment.experiment_id, run.info.run_id)

    def url(self, stage: str, seed: int | None = None) -> str | None:
        found = self.runs.get((stage, None if seed is None else str(seed)))
        if not found or not self.base:
            return None
        return f"{self.base}/#/experiments/{found[0]}/runs/{found[1]}"

    def links(self, stage: str, seeds: list[int]) -> str:
        parts = [f'<a href="{text(u)}">seed {s}</a>' for s in seeds if (u := self.url(stage, s))]
        return f'<p class="run">MLflow runs: {", ".join(parts) or "none recorded"}</p>'


def _setup(cfg: Config, meta: dict | None) -> str:
    digest = tracking.config_digest(cfg)
    rows = [
        ("data set", cfg.data.name),
        ("seeds", ", ".join(map(str, cfg.seeds))),
        ("git commit", tracking.git_commit()),
        ("config digest", digest),
    ]
    if meta:
        rows += [
            ("source", meta["origin"]),
            ("train / test images", f"{meta['n_train']} / {meta['n_test']}"),
            ("sha256 train", meta["sha256"]["train"]),
            ("sha256 test", meta["sha256"]["test"]),
            (
                "standardization",
                f"(x/255 - {meta['standardization']['mean']:.4f}) / "
                f"{meta['standardization']['std']:.4f}",
            ),
        ]
    rows += [(k, v) for k, v in versions().items()]
    t = cfg.train
    training = [
        ("epochs", t.epochs),
        ("batch size", t.batch_size),
        ("optimizer", f"SGD, momentum {t.momentum}" + (", Nesterov" if t.nesterov else "")),
        ("learning rate", f"{t.learning_rate} ({t.lr_schedule} schedule)"),
        ("L2 on kernels", t.l2),
    ]
    return (
        table(["setting", "value"], rows)
        + "<h3>Training settings</h3>"
        + table(["setting", "value"], training)
        + "<details><summary>the full resolved configuration</summary><pre>"
        + text(json.dumps(asdict(cfg), indent=1))
        + "</pre></details>"
    )


def _training(cfg: Config, links: RunLinks, scratch: Path) -> str:
    rows, histories = [], {}
    for s in cfg.seeds:
        m = _metrics(cfg, f"train_seed_{s}")
        h = _json(model_dir(cfg, s) / "history.json")
        if m:
            rows.append(
                (s, m["test_accuracy"], m["test_loss"], m["train_seconds"], m["images_per_second"])
            )
        if h:
            histories[s] = h
    body = table(["seed", "test accuracy", "test loss", "train seconds", "images/s"], rows)
    if rows:
        accs = [r[1] for r in rows]
        body += (
            f"<p>Test accuracy: min {min(accs):.2%}, max {max(accs):.2%} over "
            f"{len(rows)} seeds.</p>"
        )
    if histories:
        save_figure(seeds_history_figure(histories, "every seed"), scratch / "curves.png")
        body += figure(scratch / "curves.png", "Learning curves of every seed")
    body += figure(
        model_dir(cfg, cfg.seeds[0]) / "confusion.png",
        f"Confusion matrix on the test set, seed {cfg.seeds[0]}",
    )
    return body + links.links("train", cfg.seeds)


def _activations(cfg: Config, links: RunLinks) -> str:
    selection = _json(Path(cfg.paths.artifacts) / "selection.json")
    if not selection:
        return '<p class="muted">(the activations stages have not run)</p>'
    body = "<p>Test images chosen by rule from every seed's predictions:</p>" + table(
        ["group", "kind", "test indices", "scores"],
        [
            (
                g["name"],
                g["kind"],
                ", ".join(map(str, g["indices"])),
                ", ".join(f"{v:.3f}" for v in g["scores"]),
            )
            for g in selection["groups"]
        ],
    )
    seed = cfg.seeds[0]
    folder = activations_dir(cfg, seed)
    figs = []
    for group in selection["groups"]:
        index = group["indices"][0]
        for layer in ("Conv2D_1", "Conv2D_3", "Dense_1"):
            figs.append(
                figure(
                    folder / "grids" / f"{group['name']}_{index}_{layer}.png",
                    f"seed {seed}: {group['name']} (test image {index}), {layer}",
                )
            )
    body += (
        f'<h3>Maps of one image per group (seed {seed})</h3><div class="grid2">'
        + "".join(figs)
        + "</div>"
    )
    rows, common_figs = [], []
    for s in cfg.seeds:
        m = _metrics(cfg, f"activations_seed_{s}")
        for layer, by_cmp in (m or {}).get("common", {}).items():
            for cmp, r in by_cmp.items():
                rows.append(
                    (
                        s,
                        layer,
                        cmp,
                        r["n_common"],
                        r["n_distinct"],
                        r["jaccard_within"],
                        r["jaccard_across"],
                    )
                )
    for layer in cfg.activations.common.layers:
        for name, other in cfg.activations.common.comparisons:
            common_figs.append(
                figure(
                    folder / "common" / f"{layer}_{name}_vs_{other}.png",
                    f"seed {seed}, {layer}: {name} against {other}",
                )
            )
    body += (
        "<h3>Patterns common to a group (FCPs)</h3><p>An element is active above "
        f"{cfg.activations.common.threshold:g} x the image's layer maximum; common = active "
        "in every image of the group, distinct = and in no image of the other group.</p>"
        + table(
            [
                "seed",
                "layer",
                "comparison",
                "common",
                "distinct",
                "Jaccard within",
                "Jaccard across",
            ],
            rows,
        )
        + '<div class="grid2">'
        + "".join(common_figs)
        + "</div>"
    )
    return body + links.links("activations", cfg.seeds)


def _oip(cfg: Config, links: RunLinks) -> str:
    rows = _seed_rows(
        cfg, "oip", ("layer", "n_maps", "n_with_oip", "n_silent", "converged_fraction", "seconds")
    )
    figs = [
        figure(
            oip_dir(cfg, s) / "gallery_contrast.png",
            f"seed {s}: OIP per map of {cfg.oip.layer} (contrast-enhanced)",
        )
        for s in cfg.seeds
    ]
    o = cfg.oip
    body = (
        f"<p>Gradient ascent on the input, {o.n_starts} noise starts per map (grids "
        f"{o.grids}, weights {o.weights}), epsilon {o.epsilon}, up to {o.n_epochs} steps, "
        f"stop at relative change &lt; {o.conv_criterion:g}. Silent: the map's objective was "
        "0 from every start.</p>"
        + table(["seed", "layer", "maps", "with OIP", "silent", "converged", "seconds"], rows)
        + "".join(figs)
    )
    evolution = sorted(oip_dir(cfg, cfg.seeds[0]).glob("evolution_map_*.png"))[:2]
    body += "".join(
        figure(p, f"seed {cfg.seeds[0]}: {p.stem.replace('_', ' ')}") for p in evolution
    )
    return body + links.links("oip", cfg.seeds)


def _precursor(cfg: Config, links: RunLinks) -> str:
    rows = _seed_rows(
        cfg,
        "precursor",
        (
            "from_noise",
            "from_precursor",
            "still_silent",
            "variant_similarity_mean",
            "screen_seconds",
            "full_seconds",
        ),
    )
    p = cfg.precursor
    body = (
        f"<p>{len(p.values)} grey levels on a {p.grid}x{p.grid} grid = "
        f"{len(p.values) ** (p.grid * p.grid):,} coarse starts, {p.screen_steps}-step "
        f"screen, best {p.top_k} per map optimized for {p.full_steps} steps.</p>"
        + table(
            [
                "seed",
                "OIP from noise",
                "from precursor",
                "still silent",
                "variant similarity",
                "screen s",
                "full s",
            ],
            rows,
        )
    )
    folder = precursor_dir(cfg, cfg.seeds[0])
    body += figure(folder / "gallery.png", f"seed {cfg.seeds[0]}: precursor OIPs of silent maps")
    body += figure(
        folder / "variants.png",
        f"seed {cfg.seeds[0]}: the kept variants per map (is the pattern unique?)",
    )
    return body + links.links("precursor", cfg.seeds)


def _compare(cfg: Config, links: RunLinks) -> str:
    details = _json(compare_dir(cfg) / "compare.json")
    head = _metrics(cfg, "compare")
    if not details or not head:
        return '<p class="muted">(the compare stage has not run)</p>'
    rows = [
        (
            layer,
            h["matched_corr_median"],
            h["baseline_matched_corr_median"],
            h["frac_matched_above_0.5"],
            h["frac_matched_above_0.8"],
            h["same_index_fraction"],
            h["same_index_chance"],
            h["cka_diagonal"],
            h["baseline_cka_diagonal"],
            h.get("weight_activation_agreement"),
            h.get("permutation_consistency"),
        )
        for layer in cfg.compare.layers
        if (h := head.get(layer))
    ]
    a, b = cfg.seeds[0], cfg.seeds[1]
    folder = compare_dir(cfg)
    inter = head["interpolation"]
    body = (
        f'<div class="verdict"><b>Answer, from the numbers:</b> {text(details["verdict"])}'
        "</div>"
        + table(
            [
                "layer",
                "matched r (median)",
                "untrained",
                "r > 0.5",
                "r > 0.8",
                "same index",
                "chance",
                "CKA",
                "CKA untrained",
                "weights agree",
                "a->b->c = a->c",
            ],
            rows,
        )
        + figure(folder / "summary.png", "Per layer: trained pairs vs an untrained network")
        + figure(
            folder / f"correlations_{a}_{b}.png",
            "Map correlations, seed b re-ordered by the one-to-one matching",
        )
        + figure(
            folder / f"aligned_filters_{a}_{b}.png",
            "Conv2D_1 filters aligned by activation matching",
        )
        + "<h3>Function check</h3>"
        + table(
            ["", "as trained", "after alignment"],
            [
                (
                    "accuracy at the midpoint (mean over pairs)",
                    inter["midpoint_acc_naive_mean"],
                    inter["midpoint_acc_aligned_mean"],
                ),
                (
                    "loss barrier in accuracy (mean)",
                    inter["barrier_naive_mean"],
                    inter["barrier_aligned_mean"],
                ),
            ],
        )
        + figure(folder / "interpolation.png", "Test accuracy along the weight interpolation")
    )
    if "matched_oips" in head:
        mo = head["matched_oips"]
        body += (
            f"<h3>OIPs of matched maps ({text(mo['layer'])})</h3><p>Mean OIP similarity "
            f"(Pearson) of matched pairs {mo['similarity_matched_mean']:.3f} vs random "
            f"pairs {mo['similarity_random_mean']:.3f}; Spearman correlation between a "
            f"pair's activation correlation and its OIP similarity "
            f"{mo['spearman_corr_vs_similarity_mean']:.3f}.</p>"
            + figure(folder / f"matched_oips_{a}_{b}.png", "Best and worst matched pairs")
        )
    return body + run_link(links.url("compare"), "MLflow run of the comparison")


def run(cfg: Config) -> dict[str, Any]:
    """Write `reports/index.html` from the outputs of every earlier stage."""
    links = RunLinks(cfg)
    meta = _json(Path(cfg.paths.prepared) / "meta.json")
    with tempfile.TemporaryDirectory() as scratch:
        sections = [
            ("setup", "Data and setup", _setup(cfg, meta) + run_link(links.url("prepare"))),
            ("training", "Training", _training(cfg, links, Path(scratch))),
            ("activations", "Activation maps and class patterns", _activations(cfg, links)),
            ("oip", "OIPs: what drives each map", _oip(cfg, links)),
            ("precursor", "Precursor search for silent maps", _precursor(cfg, links)),
            ("compare", "Same filters, same order?", _compare(cfg, links)),
            (
                "reproduce",
                "Reproduce",
                "<pre>make pipeline        # or: dvc repro\n"
                "make mlflow-ui       # browse every run</pre>",
            ),
        ]
        html = page(
            "oiplab: do two trainings learn the same filters, in the same order?",
            f"{cfg.data.name}, seeds {', '.join(map(str, cfg.seeds))}",
            sections,
        )
    path = report_path(cfg)
    atomic_write_text(path, html)
    with tracking.stage_run(cfg, "report"):
        tracking.log_artifact(path, "report")
    size = path.stat().st_size
    print(f"[report] wrote {path} ({size / 1e6:.1f} MB)", flush=True)
    return {"path": str(path), "bytes": size}


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
