"""Look inside a trained SAE (and, for comparison, the model's own neurons). One idea per file:

    running_topk.py        a vectorised running top-k over a token stream, with payloads
    hook_stream.py         one forward pass per batch of token rows, several hooks at once
    units.py               what counts as a "unit": SAE features, MLP neurons, residual basis directions
    feature_inspection.py  the streaming pass: top contexts, quantile samples, density, histograms
    logit_effects.py       W_dec @ W_U through the final norm: tokens a feature promotes / suppresses
    token_classes.py       coarse token classes (digits, punctuation, function words, ...)
    polysemanticity.py     automated specificity metrics over a unit's top activations
    interference.py        decoder geometry: max |cos|, Welch bound, random baseline, co-activation
    figures.py             matplotlib figures for the analyses above
    config.py              YAML config for experiments/inspect_*.py, polysemanticity.py, interference.py
"""
