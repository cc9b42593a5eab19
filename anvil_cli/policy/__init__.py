"""Pure policy, `now` passed in: the governor, scaling, routing, pricing, forecasting, tokens."""
