"""Zero-shot species discovery: cluster specimen embeddings into putative species.

Importing this package is cheap (numpy only); scikit-learn and umappp (scranpy) load on first use.
"""
from engine.cluster.consensus import Consensus, consensus_taxonomy
from engine.cluster.core import (
    METHODS, NOISE, ClusterResult, ami, cluster_embeddings, reduce_2d, silhouette,
)
from engine.cluster.table import CLUSTER_COLUMNS, cluster_barcodes, cluster_rows

__all__ = [
    "METHODS", "NOISE", "ClusterResult", "Consensus", "CLUSTER_COLUMNS", "ami", "cluster_barcodes",
    "cluster_embeddings", "cluster_rows", "consensus_taxonomy", "reduce_2d", "silhouette",
]
