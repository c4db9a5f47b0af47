"""Training the learned image prior: pairs of decoded and original renders made with the codec
(:mod:`.pairs`, which encodes and decodes through :mod:`gscodec.api`, so it sits above the
pipelines, not inside :mod:`gscodec.restore`), and the training run itself (:mod:`.prior`,
``python -m gscodec.training.prior``). The restoration network and its inference stay in
:mod:`gscodec.restore`, which the decoder uses.
"""
