"""Stage 3: Placement → rendered files (compose, HAProxy, Rasa endpoints and credentials)."""

from syrcad.render.files import RenderedFile, render, write_tree

__all__ = ["RenderedFile", "render", "write_tree"]
