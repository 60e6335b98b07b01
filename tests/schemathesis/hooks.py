"""Schemathesis hooks for voxline's API fuzz suite (tests/api_fuzz.rs).

The built-in `positive_data_acceptance` check judges by status alone. The edge
answers 422 both for a body its schema should have refused (the document is
looser than the server: a defect) and for a schema-valid request refused on
grounds no JSON Schema can state (an agent id that does not exist, a
`schedule_at` in the past, a cursor the API never issued, a URL whose host is
not public). So the built-in check is told 400 and 422 may answer positive
data, and this check then requires every such answer to carry one of the
semantic codes below: any other 400/422 to a schema-valid request fails.
"""

import schemathesis

# Refusals of schema-valid input that depend on state or the clock.
SEMANTIC_CODES = {
    # The referenced agent does not exist / none is set up.
    "unknown_agent",
    "agent_required",
    # A call's `from_extension` is no person of the tenant's directory.
    "unknown_extension",
    # `schedule_at` is valid RFC 3339 but not in the future.
    "schedule_in_past",
    # The call would start outside the agent's calling window.
    "outside_calling_window",
    # The same Idempotency-Key was used before with another request.
    "idempotency_key_reused",
    # A well-formed cursor the API did not issue for this query.
    "invalid_cursor",
    # A text's `from` is not (or cannot text from) one of the tenant's numbers.
    "unknown_number",
    "number_not_sms_capable",
    # A prompt's {{placeholder}} the call's variables, name or metadata do
    # not fill (the prompt may be the agent's, which the request cannot see).
    "unknown_variable",
    # A transfer's extension names no person of the tenant's directory.
    "unknown_extension",
    # A transfer's queue names no queue of the tenant's directory.
    "unknown_queue",
}

# Refusals that are semantic only with these message parts.
SEMANTIC_MESSAGES = {
    # The document gives a URL's shape (scheme, no credentials, no whitespace);
    # whether its host is public, and whether a WHATWG parser takes the host at
    # all (IDNA rules, IPv6 literal syntax), is judged by the server alone.
    "invalid_url": (
        "is not a public address",
        "is an internal or metadata host name",
        "single-label (intranet) host name",
        "loopback addresses are not allowed",
        "is only allowed for loopback",
        "the URL is malformed",
        "has no host",
        "malformed host",
    ),
    # A calling window needs two different times: not expressible between two
    # properties in JSON Schema.
    "invalid_value": (
        "end must differ from start",
        # An agent's tool names are unique: not expressible across array items.
        "two tools are named",
        # Voice360 directory: whether a user, queue, agent or number exists
        # is the tenant's state; an agent id only on an AI agent is a
        # dependency between two properties.
        "which is no user of this tenant",
        "names no agent, user or queue of this tenant",
        "names no user of this tenant",
        "only an ai_agent user has an 'agent_id'",
        # Only a person (a stored user's kind) has SIP phones and a password.
        "only a person has SIP phones",
        "a developer key is the account's",
        "the CSV header row could not be read",
        # A person's call (`from_extension`) has no agent: the agent's fields
        # with it are a dependency between properties.
        "is a person's call, with no agent",
        # A campaign setting may come in the query string or the body, once.
        "is given both in the query string and in the body",
        # A transfer names a number or a person, not both; its message is
        # a warm transfer's (dependencies between properties).
        "give destination or extension, not both",
        "a message is what the person hears in a warm transfer",
        # A queue is one target among three, and blind only.
        "give one of destination, extension or queue",
        "a transfer to a queue is blind",
    ),
    # A campaign's `calling_window` in the query string is JSON text: the
    # document can only call it a string; the JSON inside is checked as the
    # body's `calling_window` is.
    "invalid_type": (
        "calling_window must be a JSON object (URL-encoded)",
    ),
    # The same dependencies, the other way round; and a CSV upload's
    # structure (a header row naming a `phone` column, RFC 4180 rows), which
    # a JSON Schema of a string cannot state.
    "missing_field": (
        "the CSV header row must name a 'phone' column",
        # A transfer needs one of three optional properties.
        "destination (an E.164 number), extension (a person's) or queue (a queue's pk) is required",
        "an ai_agent user names its agent",
        "a user key names its user",
    ),
    # `schedule_at` at most 90 days from now: relative to the clock, which a
    # JSON Schema date bound cannot follow.
    "out_of_range": ("schedule_at may be at most 90 days ahead",),
}


@schemathesis.check
def semantic_rejections_only(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code not in (400, 422):
        return None
    try:
        error = response.json()["error"]
        code, message = error["code"], error.get("message", "")
    except Exception:
        raise AssertionError(
            f"{response.status_code} without the documented Error body: {response.text[:200]!r}"
        )
    if code in SEMANTIC_CODES:
        return None
    if any(part in message for part in SEMANTIC_MESSAGES.get(code, ())):
        return None
    raise AssertionError(
        f"schema-valid request refused with {response.status_code} `{code}` ({message}): "
        "the OpenAPI document is looser than the server here"
    )
