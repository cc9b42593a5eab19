"""Answers observed in earlier runs, read from the journal for `anvil plan` (see
`anvil_cli.policy.forecast`): what was asked (prompt tokens, `max_tokens`) and what came back (output
tokens, and the answering call's own latency: a job's time also holds its waits), the newest
of each model. Answers from the result cache are not observations
(no call was made) and are left out."""

from __future__ import annotations

from anvil_cli.engine.journal.store import SUCCEEDED, Journal
from anvil_cli.policy.forecast import Answer

PER_MODEL = 2000  # the newest answers of each model are enough to fit, and bound the read

_QUERY = """
SELECT model, inp, cache_read, cache_write, out, max_tokens, call_s FROM (
    SELECT model,
           json_extract(usage_json, '$.input_tokens') AS inp,
           json_extract(usage_json, '$.cache_read_input_tokens') AS cache_read,
           json_extract(usage_json, '$.cache_creation_input_tokens') AS cache_write,
           json_extract(usage_json, '$.output_tokens') AS out,
           json_extract(job_json, '$.max_tokens') AS max_tokens,
           json_extract(attempts_json, '$[#-1].latency_s') AS call_s,
           ROW_NUMBER() OVER (PARTITION BY model ORDER BY finished_at DESC) AS newest
    FROM jobs
    WHERE state = ? AND attempts > 0 AND usage_json IS NOT NULL AND model IS NOT NULL {where}
)
WHERE newest <= ?
"""


def history_answers(
    journal: Journal, *, only_run: str | None = None, per_model: int = PER_MODEL
) -> list[Answer]:
    """The newest answers of every model in the journal (of one run, with `only_run`)."""
    where, args = ("AND run_id = ?", [only_run]) if only_run is not None else ("", [])
    rows = journal.db.execute(_QUERY.format(where=where), [SUCCEEDED, *args, per_model]).fetchall()
    answers: list[Answer] = []
    for model, inp, cache_read, cache_write, out, max_tokens, latency in rows:
        if not all(isinstance(v, int) for v in (inp, out, max_tokens)):
            continue  # an answer without usage (a foreign or damaged row) tells nothing
        prompt = inp + int(cache_read or 0) + int(cache_write or 0)
        answers.append(Answer(str(model), prompt, out, max_tokens, latency))
    return answers
