"""Training: the config (:mod:`.config`), the trainer (:mod:`.trainer`: SGD, poly schedule, DDP,
exact resume, crash safety), the checkpoint format (:mod:`.checkpoint`), the seeded data order
(:mod:`.loader`), the run log and its plot (:mod:`.runlog`, :mod:`.plot`) and starting from or
freezing another run's weights (:mod:`.weights`)."""
