"""Architectures shared by students and teachers."""

from diverse_distill.models.mlp_recommender import MLPRecommender

__all__ = ["MLPRecommender"]
