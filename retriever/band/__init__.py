"""The perplexity band: BPB under one reference model, documents kept between two quantiles."""

from retriever.band.stage import (
    BandConfig,
    PerplexityBand,
    band_cuts,
    band_docs,
    band_side,
    read_band,
    spearman,
)

__all__ = [
    "BandConfig",
    "PerplexityBand",
    "band_cuts",
    "band_docs",
    "band_side",
    "read_band",
    "spearman",
]
