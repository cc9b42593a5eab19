"""The composition root of one `anvil run`: `runner.execute_run` composes the checks made before
anything is written (`preflight`), the run opened or resumed in the journal (`resume`), the HTTP
API (`serve`), the run as one value (`context.RunContext`), conducting it over workers local or
on Ray (`conduct`, `workers`, `ray_run`), the simulator (`simulated`), and its end (`finish`)."""
