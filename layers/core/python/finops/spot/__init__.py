"""Spot training: the market data and zone hunter (``market``, ``hunter``) and the backtest (``backtest``)."""
