"""Domains of the corpus for mixtures and stratified sampling (RegMix's plan).

A document's domain is ClimbLab's ``cluster_id`` when the score folder has it (``source="cluster"``
or ``"auto"``), otherwise the nearest of ``k`` k-means centroids of the stored embeddings
(``faiss.Kmeans``, seeded; ``source="kmeans"`` forces it).
"""

from retriever.domains.assign import DomainConfig, assign_domains, read_domains

__all__ = ["DomainConfig", "assign_domains", "read_domains"]
