"""Digital twins of a device: import the surrogates labs already have, sample a device, fit one.

- :mod:`labctl.twin.unpickle`: a restricted unpickler for PyTorch files (zip and legacy
  containers) that needs no PyTorch and runs no code from the file;
- :mod:`labctl.twin.layouts`: the brains-py, brainspy-smg and SkyNEt layouts of a twin;
- :mod:`labctl.twin.convert`: a twin file to labctl's NPZ surrogate (and straight to a model);
- :mod:`labctl.twin.sampling`: an I–V dataset measured through the safety layer, block by block;
- :mod:`labctl.twin.fitting`: an MLP twin fitted to such a dataset, with a report;
- :mod:`labctl.twin.transfer`: controls trained on a twin with its exact gradients.
"""
