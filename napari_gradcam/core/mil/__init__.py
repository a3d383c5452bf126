"""Slide-level (multiple-instance) models: aggregators over tile embeddings and their attributions.

Pure torch + numpy. A slide model is a tile encoder (any model ``load_model`` takes) and an
aggregator that pools the (1, N, D) tile embeddings into slide logits. This package scores each
tile's part in the slide prediction (attention, gradient x embedding, integrated gradients),
checks the scores by removing tiles, and turns a tile's score into a pixel map (drill-down).
"""
