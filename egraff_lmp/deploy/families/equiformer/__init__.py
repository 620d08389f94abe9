"""Equiformer, the study's eighth model family (issue 19).

So far its model (:mod:`.model`), which reproduces the study's own code to machine
precision; the family's adapter (checkpoint + energy mean/std or training log → artifact),
its stages and its shipped GeTe model come next.
"""
