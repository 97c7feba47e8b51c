"""Views `llm_calls` and `tool_calls`: one shape for LLM and tool calls, whatever recorded them.

    SELECT model, sum(input_tokens), sum(cost_usd) FROM llm_calls GROUP BY model;
    SELECT name, arguments, result, error FROM tool_calls WHERE status = 'error';

Raw span attributes stay as they were stored; these views normalize at read time. Sources read:

- tracekit's anthropic instrumentation and any span following the OpenTelemetry GenAI conventions:
  `gen_ai.*` attributes (`gen_ai.input.messages` / `gen_ai.output.messages` "parts" JSON), the
  `gen_ai.client.inference.operation.details` event, the older per-message events
  (`gen_ai.user.message`, `gen_ai.assistant.message`, `gen_ai.tool.message`, `gen_ai.choice`,
  `gen_ai.content.prompt` / `gen_ai.content.completion`) and the OpenLLMetry indexed attributes
  (`gen_ai.prompt.N.role/content`, `gen_ai.completion.N.*`, `gen_ai.usage.prompt_tokens`);
- OpenInference: `llm.model_name`, `llm.input_messages.N.message.*` (contents, tool calls),
  `llm.token_count.*`, `llm.cost.total`, TOOL spans with `tool.name` / `input.value` / `output.value`;
- the SDK's own metadata span (`anthropic.messages.create`) and tracekit's `@trace(kind="llm"|"tool")`.

Messages are always GenAI "parts" JSON: `[{"role", "parts": [{"type": "text"|"reasoning"|"tool_call"|
"tool_call_response"|"blob"|..., ...}], "finish_reason"?}]`. `input_tokens` counts every prompt token,
cached ones included (as GenAI and ATIF define it); `cache_read_tokens` / `cache_write_tokens` are the
cached parts. When one call was recorded twice (an instrumentation plus the SDK's own span, or a
decorated function around an instrumented call), `llm_calls` keeps the richest record once: the
same response id, a parent/child pair of LLM spans, or an SDK span inside another LLM span's time
for the same model, counts as one call.

`tool_calls` has a row per tool span (kind tool: decorators, GenAI `execute_tool`, OpenInference TOOL,
OpenLLMetry tool tasks), joined to the model's request for it (by call id, else by name and order in
the trace), plus a row per tool call the model requested that no span recorded (source
`conversation`: arguments from the request, result from the `tool_result` sent back).
"""

from __future__ import annotations

from ._prices import prices_sql


def _s(key: str, obj: str = "a") -> str:
    return f"json_extract_string({obj}, '$.\"{key}\"')"


def _num(*keys: str, cast: str = "BIGINT") -> str:
    return "coalesce(" + ", ".join(f"TRY_CAST({_s(k)} AS {cast})" for k in keys) + ")"


def _first(*keys: str) -> str:
    return "coalesce(" + ", ".join(_s(k) for k in keys) + ")"


class _Attrs:
    """Attribute reads that parse the attributes JSON once per row: every key used goes into one
    multi-path `json_extract_string(attributes, [...])` list (50x faster than one parse per key)."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.keys: list[str] = []

    def s(self, key: str) -> str:
        if key not in self.keys:
            self.keys.append(key)
        return f"{self.column}[{self.keys.index(key) + 1}]"

    def num(self, *keys: str, cast: str = "BIGINT") -> str:
        return "coalesce(" + ", ".join(f"TRY_CAST({self.s(k)} AS {cast})" for k in keys) + ")"

    def first(self, *keys: str) -> str:
        return "coalesce(" + ", ".join(self.s(k) for k in keys) + ")"

    def extract(self, source: str) -> str:
        paths = ", ".join("'$.\"" + k + "\"'" for k in self.keys)
        return f"json_extract_string({source}, [{paths}])"


def _args(expr: str) -> str:
    """A tool call's arguments as JSON: parsed when they are JSON text, else a JSON string."""
    return f"CASE WHEN json_valid({expr}) THEN json({expr}) ELSE to_json({expr}) END"


def _parts(c: str) -> str:
    """Message content (plain text, or JSON of Anthropic blocks / GenAI parts) as a JSON parts array."""
    block = """CASE b->>'type'
            WHEN 'text' THEN json_object('type', 'text', 'content', coalesce(b->>'text', b->>'content'))
            WHEN 'thinking' THEN json_object('type', 'reasoning', 'content', b->>'thinking')
            WHEN 'redacted_thinking' THEN json_object('type', 'reasoning', 'content', '[redacted thinking]')
            WHEN 'tool_use' THEN json_object('type', 'tool_call', 'id', b->>'id', 'name', b->>'name', 'arguments', b->'input')
            WHEN 'tool_result' THEN json_object('type', 'tool_call_response', 'id', b->>'tool_use_id', 'response', b->'content')
            WHEN 'image' THEN json_object('type', 'blob', 'modality', 'image', 'content', '[image omitted]')
            ELSE b END"""
    return f"""(CASE WHEN ({c}) IS NULL THEN NULL
        WHEN json_type(TRY_CAST(({c}) AS JSON)) = 'ARRAY'
            THEN to_json(list_transform(json_extract(({c}), '$[*]'), lambda b: {block}))
        ELSE to_json([json_object('type', 'text', 'content', ({c}))]) END)"""


def _part_list(c: str) -> str:
    return f"coalesce(json_extract({_parts(c)}, '$[*]'), []::JSON[])"


def _tool_call_list(c: str) -> str:
    """OpenAI-style tool_calls JSON ([{id, function: {name, arguments}}]) as GenAI tool_call parts."""
    return f"""coalesce(list_transform(json_extract(({c}), '$[*]'), lambda t: json_object('type', 'tool_call',
        'id', t->>'id', 'name', coalesce(t->'function'->>'name', t->>'name'),
        'arguments', {_args("coalesce(t->'function'->>'arguments', t->>'arguments')")})), []::JSON[])"""


def _role_content_list(c: str) -> str:
    """[{"role", "content"}] JSON text (OpenLLMetry content events) as GenAI messages."""
    return f"""to_json(list_transform(json_extract(({c}), '$[*]'), lambda m: json_object(
        'role', m->>'role', 'parts', {_parts("m->>'content'")})))"""


_MESSAGE_EVENTS = "('gen_ai.system.message', 'gen_ai.user.message', 'gen_ai.assistant.message', 'gen_ai.tool.message')"


def llm_calls_sql() -> str:
    A = _Attrs("s.v")
    in_events = f"""to_json(list_transform(ev.in_events, lambda e: json_object(
        'role', coalesce(e.attributes->>'role', replace(replace(e.name, 'gen_ai.', ''), '.message', '')),
        'parts', to_json(list_concat(
            CASE WHEN e.name = 'gen_ai.tool.message'
                 THEN [json_object('type', 'tool_call_response', 'id', e.attributes->>'id', 'response', e.attributes->>'content')]
                 ELSE {_part_list("e.attributes->>'content'")} END,
            {_tool_call_list("e.attributes->>'tool_calls'")})))))"""
    out_events = f"""to_json(list_transform(ev.out_events, lambda e: json_object(
        'role', 'assistant',
        'parts', to_json(list_concat({_part_list("(e.attributes->>'message')->>'content'")},
                                     {_tool_call_list("(e.attributes->>'message')->>'tool_calls'")})),
        'finish_reason', e.attributes->>'finish_reason')))"""
    oi_content = """CASE max(v) FILTER (WHERE g = 'message_content.type')
            WHEN 'tool_use' THEN NULL
            WHEN 'reasoning' THEN json_object('type', 'reasoning', 'content', max(v) FILTER (WHERE g = 'message_content.text'))
            WHEN 'image' THEN CASE WHEN starts_with(max(v) FILTER (WHERE g LIKE 'message_content.image%url'), 'data:')
                THEN json_object('type', 'blob', 'modality', 'image', 'content', '[image: data URL omitted]')
                ELSE json_object('type', 'uri', 'modality', 'image', 'uri', max(v) FILTER (WHERE g LIKE 'message_content.image%url')) END
            ELSE json_object('type', coalesce(max(v) FILTER (WHERE g = 'message_content.type'), 'text'),
                             'content', max(v) FILTER (WHERE g = 'message_content.text')) END"""
    oi_tool = f"""json_object('type', 'tool_call',
            'id', max(v) FILTER (WHERE g IN ('tool_call.id', 'id')),
            'name', max(v) FILTER (WHERE g IN ('tool_call.function.name', 'name')),
            'arguments', {_args("max(v) FILTER (WHERE g IN ('tool_call.function.arguments', 'arguments'))")})"""
    input_tokens = A.num("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
    output_tokens = A.num("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
    cache_read = A.num("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                      "llm.token_count.prompt_details.cache_read")
    cache_write = A.num("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens",
                       "gen_ai.usage.cache_creation_input_tokens", "llm.token_count.prompt_details.cache_write")
    has_content = ("(s.a LIKE '%\"gen_ai.input.messages\"%' OR s.a LIKE '%\"llm.input_messages.%' "
                   "OR s.a LIKE '%\"gen_ai.prompt.%' OR len(s.events) > 0)")
    request_model = A.first("gen_ai.request.model", "llm.request.model_name", "llm.model_name")
    legacy_in = _role_content_list(f"json_extract_string(ev.legacy_prompt, '$.{chr(34)}gen_ai.prompt{chr(34)}')")
    legacy_out = _role_content_list(f"json_extract_string(ev.legacy_completion, '$.{chr(34)}gen_ai.completion{chr(34)}')")
    sql = f"""
WITH s AS (
    SELECT *, attributes AS a, __V__ AS v FROM spans WHERE kind = 'llm'
),
flat AS (
    SELECT trace_id, span_id,
        CASE WHEN k LIKE 'llm.input_messages.%' OR k LIKE 'gen_ai.prompt.%' THEN 'in' ELSE 'out' END AS side,
        CAST(regexp_extract(k, '^[a-z_]+\\.[a-z_]+\\.(\\d+)\\.', 1) AS INTEGER) AS i,
        regexp_replace(k, '^[a-z_]+\\.[a-z_]+\\.\\d+\\.(message\\.)?', '') AS f,
        json_extract_string(a, '$."' || k || '"') AS v
    FROM (SELECT trace_id, span_id, a, unnest(json_keys(a)) AS k FROM s
          WHERE a LIKE '%"llm.%_messages.%' OR a LIKE '%"gen_ai.prompt.%' OR a LIKE '%"gen_ai.completion.%')
    WHERE regexp_matches(k, '^(llm\\.(input|output)_messages|gen_ai\\.(prompt|completion))\\.\\d+\\.')
),
sub AS (
    SELECT trace_id, span_id, side, i, regexp_extract(f, '^(contents|tool_calls)\\.', 1) AS grp,
        CAST(regexp_extract(f, '^(?:contents|tool_calls)\\.(\\d+)\\.', 1) AS INTEGER) AS j,
        regexp_replace(f, '^(contents|tool_calls)\\.\\d+\\.', '') AS g, v
    FROM flat WHERE regexp_matches(f, '^(contents|tool_calls)\\.\\d+\\.')
),
sub_parts AS (
    SELECT trace_id, span_id, side, i,
        list(part ORDER BY ord) FILTER (WHERE part IS NOT NULL) AS parts
    FROM (
        SELECT trace_id, span_id, side, i, (CASE grp WHEN 'contents' THEN 0 ELSE 1 END) * 100000 + j AS ord,
            CASE WHEN grp = 'tool_calls' THEN {oi_tool} ELSE {oi_content} END AS part
        FROM sub GROUP BY trace_id, span_id, side, i, grp, j
    ) GROUP BY trace_id, span_id, side, i
),
msg_fields AS (
    SELECT trace_id, span_id, side, i,
        max(v) FILTER (WHERE f = 'role') AS role,
        max(v) FILTER (WHERE f = 'content') AS content,
        max(v) FILTER (WHERE f = 'tool_call_id') AS tool_call_id,
        max(v) FILTER (WHERE f = 'finish_reason') AS finish_reason
    FROM flat GROUP BY trace_id, span_id, side, i
),
flat_messages AS (
    SELECT m.trace_id, m.span_id,
        to_json(list(json_object(
            'role', coalesce(m.role, CASE m.side WHEN 'in' THEN 'user' ELSE 'assistant' END),
            'parts', to_json(list_concat(
                CASE WHEN m.content IS NULL THEN []::JSON[]
                     WHEN m.role = 'tool' OR m.tool_call_id IS NOT NULL
                     THEN [json_object('type', 'tool_call_response', 'id', m.tool_call_id, 'response', m.content)]
                     ELSE {_part_list("m.content")} END,
                coalesce(p.parts, []::JSON[]))),
            'finish_reason', m.finish_reason) ORDER BY m.i) FILTER (WHERE m.side = 'in')) AS input_messages,
        to_json(list(json_object(
            'role', coalesce(m.role, 'assistant'),
            'parts', to_json(list_concat({_part_list("m.content")}, coalesce(p.parts, []::JSON[]))),
            'finish_reason', m.finish_reason) ORDER BY m.i) FILTER (WHERE m.side = 'out')) AS output_messages
    FROM msg_fields m LEFT JOIN sub_parts p USING (trace_id, span_id, side, i)
    GROUP BY m.trace_id, m.span_id
),
ev AS (
    SELECT trace_id, span_id,
        list_filter(events, lambda e: e.name IN {_MESSAGE_EVENTS}) AS in_events,
        list_filter(events, lambda e: e.name = 'gen_ai.choice') AS out_events,
        list_filter(events, lambda e: e.name = 'gen_ai.client.inference.operation.details')[1].attributes AS details,
        list_filter(events, lambda e: e.name = 'gen_ai.content.prompt')[1].attributes AS legacy_prompt,
        list_filter(events, lambda e: e.name = 'gen_ai.content.completion')[1].attributes AS legacy_completion,
        list_filter(events, lambda e: e.name = 'exception')[1].attributes AS exc
    FROM s WHERE len(events) > 0
),
keyed AS (
    -- the few columns that decide which record of a call is kept (cheap: no message content)
    SELECT s.trace_id, s.span_id, s.parent_span_id, s.start_time, s.end_time,
        {request_model} AS request_model,
        coalesce({A.s("gen_ai.response.id")}, CASE WHEN s.output LIKE '{{%' THEN json_extract_string(s.output, '$.id') END) AS response_id,
        CASE WHEN s.scope = 'tracekit.anthropic' THEN 5
             WHEN s.scope = 'com.anthropic.sdk.python' THEN 2
             WHEN {has_content} THEN 4
             WHEN s.a LIKE '%"gen_ai.%' OR s.a LIKE '%"llm.%' THEN 3
             ELSE 1 END AS prio
    FROM s
),
keep AS (
    SELECT trace_id, span_id FROM keyed r
    WHERE NOT EXISTS (
        SELECT 1 FROM keyed o
        WHERE o.trace_id = r.trace_id AND o.prio > r.prio
          AND (o.span_id = r.parent_span_id OR o.parent_span_id = r.span_id)
    ) AND NOT EXISTS (
        -- the SDK's own metadata span, outside the instrumentation's span (some instrumentations do
        -- not make their span current): the same model, within the other span's time
        SELECT 1 FROM keyed o
        WHERE r.prio = 2 AND o.prio > 2 AND o.request_model = r.request_model
          AND o.start_time <= r.start_time + INTERVAL 100 MILLISECOND
          AND o.end_time >= r.end_time - INTERVAL 100 MILLISECOND
    ) AND NOT EXISTS (
        SELECT 1 FROM keyed o
        WHERE r.response_id IS NOT NULL AND o.response_id = r.response_id AND o.span_id <> r.span_id
          AND (o.prio > r.prio OR (o.prio = r.prio AND o.span_id < r.span_id))
    )
),
base AS (
    SELECT s.trace_id, s.span_id, s.parent_span_id, s.name, s.project, s.experiment_id,
        s.start_time, s.end_time, s.duration_ms AS latency_ms, s.status, s.scope, s.a,
        CASE WHEN s.scope = 'tracekit.anthropic' THEN 'tracekit'
             WHEN s.scope = 'com.anthropic.sdk.python' THEN 'anthropic-sdk'
             WHEN {A.s("openinference.span.kind")} IS NOT NULL AND {A.s("llm.system")} || {A.s("llm.model_name")} IS NOT NULL THEN 'openinference'
             WHEN s.a LIKE '%"gen_ai.%' OR len(s.events) > 0 THEN 'otel-genai'
             WHEN s.a LIKE '%"llm.%' THEN 'openinference'
             ELSE 'span' END AS source,
        CASE WHEN s.status = 'error' THEN coalesce({A.s("error.type")}, json_extract_string(ev.exc, '$."exception.type"'), 'error') END AS error_type,
        CASE WHEN s.status = 'error' THEN coalesce(s.status_message, json_extract_string(ev.exc, '$."exception.message"')) END AS error_message,
        coalesce({A.s("gen_ai.operation.name")}, lower({A.s("llm.request.type")}), 'chat') AS operation,
        {A.first("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")} AS provider,
        {request_model} AS request_model,
        {A.first("gen_ai.response.model", "llm.response.model_name", "llm.model_name", "gen_ai.request.model", "llm.request.model_name")} AS model,
        coalesce({A.s("gen_ai.response.id")}, CASE WHEN s.output LIKE '{{%' THEN json_extract_string(s.output, '$.id') END) AS response_id,
        {input_tokens} AS input_tokens,
        {output_tokens} AS output_tokens,
        {cache_read} AS cache_read_tokens,
        {cache_write} AS cache_write_tokens,
        {A.num("gen_ai.usage.reasoning.output_tokens", "llm.token_count.completion_details.reasoning")} AS reasoning_tokens,
        {A.num("tracekit.cost_usd", "llm.cost.total", "gen_ai.usage.cost", cast="DOUBLE")} AS recorded_cost,
        1000 * {A.num("tracekit.llm.time_to_first_token", "gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token", cast="DOUBLE")} AS ttft_ms,
        coalesce(TRY_CAST({A.s("gen_ai.request.stream")} AS BOOLEAN), {A.s("llm.invocation_parameters")} LIKE '%"stream": true%') AS stream,
        coalesce({A.num("gen_ai.request.max_tokens")}, TRY_CAST(json_extract_string({A.s("llm.invocation_parameters")}, '$.max_tokens') AS BIGINT)) AS max_tokens,
        coalesce({A.num("gen_ai.request.temperature", cast="DOUBLE")}, TRY_CAST(json_extract_string({A.s("llm.invocation_parameters")}, '$.temperature') AS DOUBLE)) AS temperature,
        {A.s("gen_ai.system_instructions")} AS system_instructions,
        coalesce({A.s("gen_ai.input.messages")}, json_extract_string(ev.details, '$."gen_ai.input.messages"'),
                 fm.input_messages, CASE WHEN len(ev.in_events) > 0 THEN {in_events} END,
                 {legacy_in}) AS input_messages,
        coalesce({A.s("gen_ai.output.messages")}, json_extract_string(ev.details, '$."gen_ai.output.messages"'),
                 fm.output_messages, CASE WHEN len(ev.out_events) > 0 THEN {out_events} END,
                 {legacy_out}) AS output_messages,
        coalesce({A.s("gen_ai.tool.definitions")}, {A.s("llm.tools")}) AS tool_definitions,
        {A.s("gen_ai.response.finish_reasons")} AS finish_reasons_json,
        coalesce({A.s("anthropic.message.stop_reason")}, {A.s("llm.finish_reason")}) AS native_stop,
        s.input AS span_input, s.output AS span_output
    FROM s JOIN keep USING (trace_id, span_id)
    LEFT JOIN ev USING (trace_id, span_id) LEFT JOIN flat_messages fm USING (trace_id, span_id)
),
priced AS (
    SELECT b.*,
        (SELECT arg_max(struct_pack(p_input, p_output, p_cache_write, p_cache_read), length(prefix))
         FROM {prices_sql()} WHERE b.model IS NOT NULL AND starts_with(b.model, prefix)) AS price
    FROM base b
)
SELECT
    trace_id, span_id, parent_span_id, name, source, project, experiment_id, start_time, end_time, latency_ms,
    status, error_type, error_message, operation, provider, request_model, model, response_id,
    coalesce(json_extract_string(finish_reasons_json, '$[0]'), native_stop,
             json_extract_string(output_messages, '$[0].finish_reason')) AS stop_reason,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    input_tokens + output_tokens AS total_tokens,
    coalesce(recorded_cost, CASE WHEN price IS NOT NULL AND input_tokens IS NOT NULL THEN (
        greatest(input_tokens - coalesce(cache_read_tokens, 0) - coalesce(cache_write_tokens, 0), 0) * price.p_input
        + coalesce(output_tokens, 0) * price.p_output
        + coalesce(cache_write_tokens, 0) * price.p_cache_write
        + coalesce(cache_read_tokens, 0) * price.p_cache_read) / 1e6 END) AS cost_usd,
    ttft_ms, stream, max_tokens, temperature,
    system_instructions,
    CAST(coalesce(input_messages, span_input) AS VARCHAR) AS input_messages,
    CAST(coalesce(output_messages, span_output) AS VARCHAR) AS output_messages,
    tool_definitions,
    CAST(to_json(list_filter(coalesce(json_extract(output_messages, '$[*].parts[*]'), []::JSON[]),
                             lambda p: p->>'type' = 'tool_call')) AS VARCHAR) AS tool_calls
FROM priced
"""
    return sql.replace("__V__", A.extract("attributes"))


TOOL_CALLS_SQL = f"""
WITH t AS (
    SELECT trace_id, span_id, parent_span_id, start_time, duration_ms, status, status_message, project,
        experiment_id, scope, attributes AS a, input, output, events,
        coalesce({_s("gen_ai.tool.name")}, {_s("tool.name")}, {_s("traceloop.entity.name")}, name) AS name,
        coalesce({_s("gen_ai.tool.call.id")}, {_s("tool_call.id")}, {_s("tool.id")}) AS call_id
    FROM spans WHERE kind = 'tool'
),
spans_n AS (
    SELECT *, row_number() OVER (PARTITION BY trace_id, name ORDER BY start_time, span_id) AS nth FROM t
),
requested AS (
    SELECT l.trace_id, l.span_id AS llm_span_id, l.end_time, l.project, l.experiment_id,
        p->>'id' AS call_id, p->>'name' AS name, (p->'arguments')::VARCHAR AS arguments,
        row_number() OVER (PARTITION BY l.trace_id, p->>'name' ORDER BY l.start_time, l.span_id, n) AS nth
    FROM (SELECT *, unnest(json_extract(tool_calls, '$[*]')) AS p, generate_subscripts(json_extract(tool_calls, '$[*]'), 1) AS n
          FROM llm_calls WHERE tool_calls <> '[]') AS l
),
responses AS (
    SELECT trace_id, p->>'id' AS call_id,
        arg_min((p->'response')::VARCHAR, start_time) AS result,
        bool_or(coalesce(TRY_CAST(p->>'is_error' AS BOOLEAN), false)) AS is_error
    FROM (SELECT trace_id, start_time, unnest(json_extract(input_messages, '$[*].parts[*]')) AS p
          FROM llm_calls WHERE input_messages LIKE '%tool_call_response%')
    WHERE p->>'type' = 'tool_call_response'
    GROUP BY ALL
),
matched AS (
    SELECT s.*, r.llm_span_id, r.call_id AS req_call_id, r.arguments AS req_arguments
    FROM spans_n s LEFT JOIN requested r
      ON r.trace_id = s.trace_id AND (r.call_id = s.call_id OR (s.call_id IS NULL AND r.name = s.name AND r.nth = s.nth))
)
SELECT m.trace_id, m.span_id, m.parent_span_id, m.llm_span_id, coalesce(m.call_id, m.req_call_id) AS call_id, m.name,
    coalesce({_s("gen_ai.tool.call.arguments", "m.a")}, m.input, {_s("traceloop.entity.input", "m.a")}, m.req_arguments) AS arguments,
    coalesce({_s("gen_ai.tool.call.result", "m.a")}, m.output, {_s("traceloop.entity.output", "m.a")}, resp.result) AS result,
    CASE WHEN m.status = 'error' OR resp.is_error THEN 'error' ELSE 'ok' END AS status,
    CASE WHEN m.status = 'error' THEN coalesce(m.status_message, {_s("error.type", "m.a")}, 'error')
         WHEN resp.is_error THEN resp.result END AS error,
    m.start_time, m.duration_ms, m.project, m.experiment_id, 'span' AS source
FROM matched m LEFT JOIN responses resp ON resp.trace_id = m.trace_id AND resp.call_id = coalesce(m.call_id, m.req_call_id)
UNION ALL
SELECT r.trace_id, NULL, NULL, r.llm_span_id, r.call_id, r.name, r.arguments, resp.result,
    CASE WHEN resp.is_error THEN 'error' WHEN resp.call_id IS NULL THEN 'unknown' ELSE 'ok' END,
    CASE WHEN resp.is_error THEN resp.result END,
    r.end_time, NULL, r.project, r.experiment_id, 'conversation'
FROM requested r LEFT JOIN responses resp ON resp.trace_id = r.trace_id AND resp.call_id = r.call_id
WHERE NOT EXISTS (SELECT 1 FROM matched m WHERE m.trace_id = r.trace_id AND m.llm_span_id = r.llm_span_id
                  AND m.req_call_id IS NOT DISTINCT FROM r.call_id AND m.name = r.name)
"""

LLM_DOC = ("One row per LLM call from any instrumentation (tracekit, OTel GenAI incl. OpenLLMetry, OpenInference): "
           "model, provider, tokens (input incl. cache), cost_usd, latency, stop reason, GenAI-parts input/output "
           "messages, tool calls requested.")
TOOL_DOC = ("One row per tool call: tool spans (decorators, GenAI execute_tool, OpenInference TOOL) and calls the model "
            "requested without a span (source 'conversation'): name, arguments, result, error, duration; status ok | error, "
            "or unknown when no result was ever seen.")


DOCS: dict[str, str] = {"llm_calls": LLM_DOC, "tool_calls": TOOL_DOC}


def views() -> dict[str, str]:
    """Both views' SQL; llm_calls prices with the price table as it is now."""
    return {"llm_calls": llm_calls_sql(), "tool_calls": TOOL_CALLS_SQL}
