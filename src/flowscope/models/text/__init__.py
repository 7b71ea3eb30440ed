"""Text conditioning for Stable Diffusion: CLIP's tokenizer, ComfyUI's prompt weighting syntax,
textual-inversion embeddings and the text encoders' forward pass."""
