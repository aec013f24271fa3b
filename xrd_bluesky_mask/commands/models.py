"""``xrd-mask models``: list, show, register and activate versions of the model registry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = 4


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    m = sub.add_parser(
        "models", help="list, show, register and activate model versions",
        description="The model registry: numbered model versions with cards (version 0 is the "
        "packaged default model; the other packaged models, e.g. 'light', are listed by name). "
        "The active version is what the U-Net masker, predict_mask and the "
        "Bluesky callback use when no model is given. Directory: --registry, else "
        "$XRD_MASK_MODELS, else models/ in the user data folder (on Linux "
        "$XDG_DATA_HOME/xrd-bluesky-mask/models, by default "
        "~/.local/share/xrd-bluesky-mask/models); `list` prints it.",
    )
    m.add_argument("--registry", type=Path, default=None, help="registry directory")
    actions = m.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="one line per version and packaged model; * marks "
                            "the active one")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = actions.add_parser("show", help="the model card of a version")
    show.add_argument("id", help="version number (3 or v3), model id, 'active', 'default' or "
                      "a packaged model's name ('light')")
    show.add_argument("--json", action="store_true", help="print the whole card as JSON")
    act = actions.add_parser("activate", help="make a version the active model")
    act.add_argument("id", help="version number (3 or v3), model id or 'default'")
    reg = actions.add_parser("register", help="copy a model folder in as a new version")
    reg.add_argument("folder", type=Path, help="model folder (model_card.json + weights)")
    reg.add_argument("--model-id", default=None,
                     help="id of the new version ({version} is replaced by its number)")
    reg.add_argument("--activate", action="store_true", help="also make it the active model")
    return m


def _heldout_recall(card) -> str:
    for key, name in (("heldout_annotated", "new"), ("val", None)):
        block = card.metrics.get(key)
        if isinstance(block, dict):
            value = (block.get(name) or {}).get("recall") if name else block.get("val_recall")
            if isinstance(value, int | float):
                return f"{value:.3f} ({'held-out' if name else 'val'})"
    return "-"


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..models.registry import ModelRegistry

    registry = ModelRegistry(args.registry)
    if args.action == "list":
        entries = registry.entries() + registry.packaged()
        if args.json:
            print(json.dumps([{"version": e.version, "name": e.name, "model_id": e.model_id,
                               "active": e.active, "path": str(e.path), "sha256": e.sha256,
                               "parent": e.card.parent, "created": e.card.created}
                              for e in entries], indent=1))
            return 0
        print(f"registry: {registry.root}")
        head = ("ver", "model id", "created", "parent", "recall", "sha256")
        rows = [(e.label, e.model_id, e.card.created, e.card.parent or "-",
                 _heldout_recall(e.card), e.sha256[:12]) for e in entries]
        # columns as wide as their longest cell, so every row lines up (labels like
        # "default-v2" are longer than a version number)
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
        for mark, row in [(" ", head), *(("*" if e.active else " ", r)
                                         for e, r in zip(entries, rows, strict=True))]:
            cells = [f"{row[0]:>{widths[0]}}"] + [f"{c:{w}s}" for c, w in
                                                   zip(row[1:], widths[1:], strict=True)]
            print(f"{mark} " + "  ".join(cells).rstrip())
        return 0
    if args.action == "show":
        entry = registry.get(args.id)
        if args.json:
            print(entry.card.model_dump_json(indent=2))
            return 0
        card = entry.card
        what = (f"version {entry.version}" if entry.version is not None
                else f"packaged model {entry.name!r}")
        print(f"{what}{' (active)' if entry.active else ''}: {card.model_id}")
        print(f"  folder       {entry.path}")
        print(f"  sha256       {card.sha256}")
        print(f"  created      {card.created}")
        print(f"  parent       {card.parent or '-'}"
              + (f" (sha256 {card.parent_sha256[:12]})" if card.parent_sha256 else ""))
        arch = card.architecture
        print(f"  architecture {card.network}: depth {arch.depth}, {arch.base_channels} base "
              f"channels, growth {arch.growth_rate:g}; threshold {card.threshold:.3f}")
        if card.description:
            print(f"  description  {card.description}")
        for r in card.runs:
            print(f"  run {r.uid}: train frames {r.train_frames}, held-out {r.heldout_frames}")
        config = card.training.get("config")
        if config:
            keys = ("epochs", "batch_size", "lr", "lr_schedule", "class_weights", "target_tnr")
            print("  training     " + ", ".join(f"{k} {config[k]}" for k in keys if k in config))
        for key, value in card.metrics.items():
            text = json.dumps(value)
            print(f"  metrics.{key}: {text if len(text) < 300 else text[:297] + '...'}")
        return 0
    if args.action == "register":
        entry = registry.register(args.folder, model_id=args.model_id)
        print(f"registered {entry.model_id} as version {entry.version} ({entry.path})")
        if args.activate:
            registry.activate(entry.label)
            print(f"active model: version {entry.version} ({entry.model_id})")
        return 0
    entry = registry.activate(args.id)
    print(f"active model: version {entry.version} ({entry.model_id}, sha256 {entry.sha256[:12]})")
    return 0
