"""Which local file open_clip would load for an (arch, tag), found without downloading anything.

Neither library answers this publicly. open_clip's `download_pretrained` downloads on a cache miss;
huggingface_hub's `try_to_load_from_cache` looks up one named repo file, but not open_clip's
preference for a .safetensors alternative, nor open_clip's own URL cache (~/.cache/clip). So hub
entries go through open_clip's own `download_pretrained_from_hf` with the hub forced offline (a
miss raises instead of fetching), and only the choice between file / hub / URL and the URL cache
path are restated here, following open_clip.pretrained.download_pretrained.
"""

from __future__ import annotations

import os

from visit_assets.lib.models.weights import hub_offline


def _is_url_cached(url: str, cache_dir: str | None) -> str | None:
    target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
    return target if os.path.isfile(target) else None


def cached_checkpoint_for_tag(arch: str, tag: str, cache_dir: str | None = None) -> str | None:
    """Local file open_clip would load for (arch, tag), if already downloaded; never downloads.

    An explicit 'file', else the HF hub entry (preferred when huggingface_hub is installed), else
    the URL cache.
    """
    import open_clip
    from open_clip import pretrained as oc_pretrained

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    hf_entry = cfg.get("hf_hub", "")
    if hf_entry and oc_pretrained.has_hf_hub():
        model_id, filename = os.path.split(hf_entry)
        try:
            with hub_offline():
                return oc_pretrained.download_pretrained_from_hf(
                    model_id, filename=filename or None, cache_dir=cache_dir
                )
        except Exception:
            return None
    if cfg.get("url"):
        return _is_url_cached(cfg["url"], cache_dir)
    return None
