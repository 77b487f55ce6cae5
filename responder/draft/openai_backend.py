"""The ``openai`` drafter: a language model writes the reply from the retrieved knowledge.

Runs in the pipeline's draft step (after retrieval, before routing) when ``[llm] provider =
"openai"``. Any OpenAI-compatible server works through ``[llm] base_url`` (OpenAI, Ollama, vLLM,
llama.cpp). The prompt is rendered from ``templates/prompts/system.j2`` (voice, rules, up to
three tone examples, the retrieved facts as the only allowed facts) and ``user.j2`` (the thread
history and the customer's text, delimited as untrusted input). The model is asked for
``{"reply", "confidence", "sources", "needs_human"}``; parsing is lenient because local servers
may ignore ``response_format``.

The client's own retries are off: timeouts, connection errors, 429 (honouring Retry-After up to
``MAX_RETRY_AFTER_S``) and 5xx are retried here with exponential backoff inside ``budget_s``.
When they run out, or on any other API error, the offline drafter answers instead, with a reason
and a confidence capped at ``FALLBACK_CAP`` so the draft waits for review. Never touches the
database; token usage rides on :class:`LLMDraftResult` for the caller to store. A reply that repeats
our own instructions (a leaked prompt) is flagged and held, whatever trick asked for it.
"""
from __future__ import annotations

import email.utils
import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Callable

import openai

from responder.core.logs import redact
from responder.core.settings import Settings
from responder.core.templating import render
from responder.draft.base import DraftRequest, DraftResult
from responder.draft.offline import OfflineDrafter

TEMPERATURE, MAX_TOKENS = 0.2, 400
TIMEOUT_S = 15.0          # one request
BUDGET_S = 20.0           # the whole draft: every attempt and every wait
MAX_ATTEMPTS = 4
BACKOFF_S, MAX_BACKOFF_S = 1.0, 8.0
MAX_RETRY_AFTER_S = 10.0  # a server asking for a longer wait gets the offline draft instead
FALLBACK_CAP = 0.5        # at most this sure when the draft is a fallback or flagged (goes to review)
NO_KEY = "unused-for-local-servers"
MAX_EXAMPLES, MAX_FACTS, MAX_TURNS = 3, 8, 10
MAX_FACT_CHARS, MAX_TURN_CHARS = 2000, 2000
# Our delimiter tags, in any case or spacing (also fullwidth '<'), inside text from outside.
TAGS = re.compile(r"[<\uff1c]\s*/?\s*(?:customer_message|history|turn|facts?|examples?)\b[^>\uff1e]*[>\uff1e]?", re.I)
FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
REPLY_FIELD = re.compile(r'"reply"\s*:\s*"((?:[^"\\]|\\.)*)', re.S)
# What may be quoted back: the facts, the tone examples, the thread and the customer's own words.
QUOTABLE = re.compile(r"<(facts|example|history|customer_message)>.*?</\1>", re.S)
ECHO_WORDS = 7  # this many words in a row from our own instructions in a reply: the prompt is leaking


@dataclass
class LLMDraftResult(DraftResult):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""

    @property
    def usage(self) -> dict[str, int | str]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "model": self.model}


def neutralise(text: str) -> str:
    """Defang our delimiter tags in outside text, so it cannot close or open a section."""
    return TAGS.sub(lambda m: m.group(0).replace("<", "‹").replace("\uff1c", "‹")
                    .replace(">", "›").replace("\uff1e", "›"), text or "")


def _clip(text: str, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " […]"


def build_messages(request: DraftRequest, store) -> list[dict[str, str]]:
    """The system and user messages for ``request``; ``store`` is ``settings.store``."""
    facts = [{"source": h.source, "text": neutralise(_clip(h.text, MAX_FACT_CHARS))}
             for h in request.hits if h.kind != "example"][:MAX_FACTS]
    examples = []
    for hit in [h for h in request.hits if h.kind == "example"][:MAX_EXAMPLES]:
        reply = hit.text[len(hit.title):] if hit.text.startswith(hit.title) else hit.text.partition("\n")[2]
        examples.append({"customer": neutralise(hit.title), "reply": neutralise(reply.strip())})
    history = [{"speaker": "customer" if t.direction == "in" else store.name,
                "text": neutralise(_clip(t.text, MAX_TURN_CHARS))} for t in request.history[-MAX_TURNS:]]
    system = render("prompts/system.j2", store_name=store.name, owner_name=store.owner_name,
                    channel=request.channel, facts=facts, examples=examples)
    user = render("prompts/user.j2", history=history, customer_name=neutralise(request.customer_name),
                  subject=neutralise(request.subject), text=neutralise(request.text.strip()))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def repeated_instructions(reply: str, messages: list[dict[str, str]]) -> str | None:
    """The first ``ECHO_WORDS`` words in a row that ``reply`` shares with the instructions we sent (a leaked
    prompt, however it was asked for: "repeat everything above", base64, another language's request…)."""
    words = lambda text: re.findall(r"[a-z0-9']+", text.lower())  # noqa: E731
    ours = words(QUOTABLE.sub(" ", "\n".join(m["content"] for m in messages)))
    runs = {tuple(ours[i:i + ECHO_WORDS]) for i in range(len(ours) - ECHO_WORDS + 1)}
    said = words(reply)
    return next((" ".join(run) for i in range(len(said) - ECHO_WORDS + 1)
                 if (run := tuple(said[i:i + ECHO_WORDS])) in runs), None)


def _json_object(text: str) -> tuple[dict | None, bool]:
    """(the JSON object in ``text`` or None, whether ``text`` looked like JSON at all)."""
    candidates = [text, *FENCE.findall(text)]
    if "{" in text and "}" in text:
        candidates.append(text[text.find("{"):text.rfind("}") + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data, True
    return None, text.startswith(("{", "```")) or '"reply"' in text


def _confidence(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else min(1.0, max(0.0, number))


def _cap(confidence: float | None, cap: float = FALLBACK_CAP) -> float | None:
    return None if confidence is None else min(confidence, cap)


def parse_reply(content: str, allowed_sources: set[str]) -> tuple[str, float | None, list[str], list[str]] | None:
    """(reply, confidence, sources, reasons) from the model's text; None when nothing is usable."""
    text = (content or "").strip()
    if not text:
        return "", 0.0, [], ["the model returned an empty reply"]
    data, looks_like_json = _json_object(text)
    if data is None:
        if not looks_like_json:
            return text, None, [], ["the model did not return JSON"]
        found = REPLY_FIELD.search(text)  # a cut-off or broken object: keep its reply if we can
        if not found or not found.group(1).strip():
            return None
        try:
            reply = json.loads(f'"{found.group(1)}"')
        except ValueError:
            reply = found.group(1)
        return reply.strip(), None, [], ["the model returned malformed JSON"]
    reasons: list[str] = []
    reply = next((data[k] for k in ("reply", "answer", "response") if isinstance(data.get(k), str)), "").strip()
    confidence = _confidence(data.get("confidence"))
    if confidence is None:
        reasons.append("the model gave no confidence")
    cited = data.get("sources") or []
    cited = [cited] if isinstance(cited, str) else [str(s) for s in cited] if isinstance(cited, list) else []
    sources = [s for s in dict.fromkeys(cited) if s in allowed_sources]
    dropped = [s for s in dict.fromkeys(cited) if s not in allowed_sources]
    if dropped:
        reasons.append(f"the model cited sources that were not retrieved ({', '.join(dropped)}); dropped")
        confidence = _cap(confidence)
    if data.get("needs_human") in (True, "true", "True", "yes", 1):
        reasons.append("the model asked for a person")
        confidence = _cap(confidence)
    if not reply:
        return "", 0.0, sources, ["the model returned an empty reply", *reasons]
    return reply, confidence, sources, reasons


def _answer(completion) -> tuple[str, str | None, str | None] | None:
    """(content, refusal, finish_reason) of the first choice; None when ``completion`` has no such shape."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list):
        return None
    if not choices:
        return "", None, None
    message = getattr(choices[0], "message", None)
    content, refusal = getattr(message, "content", None), getattr(message, "refusal", None)
    if content is not None and not isinstance(content, str):
        return None
    return content or "", refusal if isinstance(refusal, str) else None, getattr(choices[0], "finish_reason", None)


def _retry_after(headers) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is None:
            continue
        try:
            seconds = float(value) / scale
            return seconds if math.isfinite(seconds) else None
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError, OverflowError):
                return None
    return None


class OpenAIDrafter:
    name = "openai"
    wants_examples = True  # the pipeline adds a few tone examples to the hits

    def __init__(self, settings: Settings, *, timeout: float | None = None, budget_s: float | None = None,
                 max_attempts: int = MAX_ATTEMPTS, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.model = settings.llm.model
        timeout = timeout or getattr(settings.llm, "timeout_s", None) or TIMEOUT_S
        budget_s = budget_s or getattr(settings.llm, "budget_s", None) or BUDGET_S
        self.timeout, self.budget_s, self.max_attempts = timeout, budget_s, max(1, max_attempts)
        self._sleep, self._clock = sleep, clock
        self._json_mode = True
        self.client = openai.OpenAI(base_url=settings.llm.base_url or None,
                                    api_key=os.environ.get(settings.llm.api_key_env) or NO_KEY,
                                    timeout=timeout, max_retries=0)
        self.offline = OfflineDrafter(settings)

    def draft(self, request: DraftRequest) -> DraftResult:
        messages = build_messages(request, self.settings.store)
        completion, failure = self._complete(messages)
        if completion is None:
            return self._fallback(request, failure)
        answer = _answer(completion)
        if answer is None:  # a proxy's or a broken server's 200 that isn't a chat completion
            return self._fallback(request, "its answer was not a chat completion")
        content, refusal, finish_reason = answer
        allowed = {h.source for h in request.hits if h.kind != "example"}
        parsed = parse_reply(content, allowed)
        if parsed is None:
            return self._fallback(request, "it returned malformed JSON with no reply in it")
        reply, confidence, sources, reasons = parsed
        if refusal and not reply:
            reasons.append(f"the model refused: {_clip(refusal, 200)}")
        if reply and (echo := repeated_instructions(reply, messages)):
            reasons.append(f"the reply repeats the drafting instructions ('{echo}…')")
            confidence = _cap(confidence)
        if finish_reason == "length":
            reasons.append(f"the reply was cut off at {MAX_TOKENS} tokens")
            confidence = _cap(confidence)
        if reply and not allowed:
            reasons.append("the knowledge folder is empty: add FAQ, policies or a catalog"
                           if request.knowledge_empty else "nothing in the knowledge matched the question")
            confidence = _cap(confidence)
        usage = getattr(completion, "usage", None)
        return LLMDraftResult(reply, confidence, sources, reasons, self.name,
                              prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                              completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                              model=getattr(completion, "model", None) or self.model)

    def _complete(self, messages: list[dict[str, str]]):
        """(the completion, None) or (None, why it failed), retrying what is worth retrying."""
        deadline = self._clock() + self.budget_s
        why = "no attempt was made"
        for attempt in range(1, self.max_attempts + 1):
            timeout = max(0.1, min(self.timeout, deadline - self._clock()))
            extra = {"response_format": {"type": "json_object"}} if self._json_mode else {}
            try:
                return self.client.chat.completions.create(
                    model=self.model, messages=messages, temperature=TEMPERATURE, max_tokens=MAX_TOKENS,
                    timeout=timeout, **extra), None
            except openai.APITimeoutError:
                why, wait = f"no answer within {timeout:g} s", self._backoff(attempt)
            except openai.APIConnectionError as exc:
                why, wait = f"could not connect: {exc.__cause__ or exc.message}", self._backoff(attempt)
            except openai.APIStatusError as exc:
                why, wait = self._status_failure(exc, attempt)
                if wait is None and exc.status_code == 400 and self._json_mode and "response_format" in why:
                    self._json_mode, wait = False, 0.0  # a local server without JSON mode: ask again
            except openai.OpenAIError as exc:
                return None, _clip(redact(str(exc)), 200)
            except ValueError as exc:  # the body wasn't JSON (a proxy's error page, a cut-off answer): retry
                why, wait = f"its answer was not JSON ({_clip(str(exc), 80)})", self._backoff(attempt)
            if wait is None:
                return None, why
            if attempt == self.max_attempts:
                break
            if self._clock() + wait + min(self.timeout, 1.0) > deadline:
                return None, f"{why}; gave up after {attempt} attempt{'s' * (attempt > 1)} ({self.budget_s:g} s budget)"
            if wait:
                self._sleep(wait)
        return None, f"{why}; gave up after {self.max_attempts} attempts"

    def _backoff(self, attempt: int) -> float:
        return min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (attempt - 1))

    def _status_failure(self, exc: openai.APIStatusError, attempt: int) -> tuple[str, float | None]:
        """(why, seconds to wait before retrying, or None not to retry)."""
        status, body = exc.status_code, exc.body
        error = body.get("error", body) if isinstance(body, dict) else {}
        error = error if isinstance(error, dict) else {"message": str(error)}
        message = error.get("message") or exc.message
        # A server's error text can echo the key ("Incorrect API key provided: sk-…"): it is stored on
        # the draft and shown to the owner, so it is redacted like a log line.
        why = f"HTTP {status}: {_clip(redact(str(message)), 200)}"
        if status == 429 and error.get("code") == "insufficient_quota":
            return why, None
        if status not in (408, 409, 429) and status < 500:
            return why, None
        asked = _retry_after(exc.response.headers)
        if asked is None:
            return why, self._backoff(attempt)
        if asked > MAX_RETRY_AFTER_S:
            return f"{why} (asked to wait {asked:g} s)", None
        return why, max(0.0, asked)

    def _fallback(self, request: DraftRequest, why: str) -> LLMDraftResult:
        result = self.offline.draft(request)
        return LLMDraftResult(result.reply, _cap(result.confidence), result.sources,
                              [f"the language model failed ({why}); drafted offline", *result.reasons],
                              result.backend, model=self.model)
