"""The hook points every model offers to intervention and probing code (no torch needed to name them)."""

# Component name → (module path with %s for the layer, "input" | "output").
HOOK_POINTS: dict[str, tuple[str, str]] = {
    "block_input": ("layers[%s]", "input"),
    "block_output": ("layers[%s]", "output"),
    "mixer_input": ("layers[%s].mixer", "input"),
    "mixer_output": ("layers[%s].mixer", "output"),
    "mlp_input": ("layers[%s].mlp", "input"),
    "mlp_output": ("layers[%s].mlp", "output"),
}
