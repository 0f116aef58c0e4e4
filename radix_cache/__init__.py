"""A token radix tree with SGLang RadixCache semantics, and the trajectory store built on it.

Pure Python + numpy: nothing here imports torch, SGLang or Ray.
"""
