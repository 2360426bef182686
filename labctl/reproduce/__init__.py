"""``labctl reproduce``: the paper's key figures (Fig. 3b, 3c,d, 4a, 4b,c) regenerated on the
simulated device, as PNGs and a Markdown report setting each result beside the published claim.
Runs from a source checkout (it reads ``configs/``)."""
