"""Building blocks of low-rank factorisation (`lowrank`): the factor convolutions of a
conv layer and how to compute them (`decompose`), and the per-layer ranks that meet a MAdds
target or a retained-energy threshold (`ranks`). Registers no method."""
