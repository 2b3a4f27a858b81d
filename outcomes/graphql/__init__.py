"""``/api/graphql/``: the API's reads as GraphQL (strawberry), read-only.

Another way in, not another query path: every report field is answered by its REST endpoint
called in this process (as a saved report's run is, ``outcomes.report_runs``) — the same
checks and messages, the same snapshot cache, the same selectors — and the outcomes
connection pages with the list's own filters, selector and keyset cursors.

Modules:

* ``types`` — the answers' GraphQL types, made from the REST answers' serializers (one
  declaration of each answer's fields) [pure];
* ``cost`` — what a request costs against the rate limit: one per report it asks for [pure];
* ``schema`` — the query type, its arguments, the limits (depth, aliases, tokens);
* ``view`` — the HTTP endpoint: the API's authentication, scopes, rate limits, metrics.
"""
