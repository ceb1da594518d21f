"""`caption_llm`: a chat LLM merges the CoCa and VideoBLIP captions of a clip into one sentence.

Two backends answer the same chat (`merge_messages`, prompt from config): `LocalLlm` runs a causal LM with
transformers in this worker, `HttpLlm` sends it to an OpenAI-compatible server (`vllm serve MODEL`), which
batches the requests of all workers on its GPUs. A clip without both captions gets no merge (status
`no_input`): the LLM would only paraphrase one caption, or invent.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from curation.captions.generation import hf_generate_kwargs, loading, seeded
from curation.captions.text import NO_INPUT, Caption
from curation.config import LlmConfig
from curation.devices import resolve_device, resolve_dtype
from curation.errors import EndpointError, ModelLoadError

STAGE = "caption.llm"
Chat = list[dict[str, str]]


def merge_messages(coca: str, vblip: str, config: LlmConfig) -> Chat:
    """The chat asking the LLM to merge two captions: the system prompt (if any), then the filled-in prompt."""
    messages = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    return [*messages, {"role": "user", "content": config.prompt.format(coca=coca, vblip=vblip)}]


class LlmMerger:
    """Merges caption pairs; a backend only answers chats (`answer`)."""

    def __init__(self, config: LlmConfig):
        self.config = config

    def __call__(self, coca: Sequence[str | None], vblip: Sequence[str | None]) -> list[Caption]:
        """One merged caption per clip, from its CoCa and VideoBLIP captions (None where a caption is missing)."""
        if len(coca) != len(vblip):
            raise ValueError(f"{STAGE}: {len(coca)} CoCa captions but {len(vblip)} VideoBLIP captions")
        wanted = [index for index, pair in enumerate(zip(coca, vblip, strict=True)) if None not in pair]
        chats = [merge_messages(coca[index], vblip[index], self.config) for index in wanted]
        replies: list[str | None] = []
        for start in range(0, len(chats), self.config.batch_size):
            replies += self.answer(chats[start : start + self.config.batch_size])
        captions = [Caption(None, NO_INPUT)] * len(coca)
        for index, reply in zip(wanted, replies, strict=True):
            captions[index] = Caption.from_generated(reply)
        return captions

    def answer(self, chats: list[Chat]) -> list[str | None]:
        raise NotImplementedError


def load_llm(config: LlmConfig) -> LlmMerger:
    """The configured backend, ready: the model loaded, or the server answering and serving the model."""
    return HttpLlm.load(config) if config.backend == "http" else LocalLlm.load(config)


class LocalLlm(LlmMerger):
    """A transformers causal LM with a chat template, batched with left padding."""

    def __init__(self, config: LlmConfig, model, tokenizer, device: torch.device):
        super().__init__(config)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        # Decoder-only models continue the last position: pad on the left so every prompt ends there.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def load(cls, config: LlmConfig) -> LocalLlm:
        device = resolve_device(config.device)
        dtype = resolve_dtype(device, config.precision)
        with loading(STAGE, config.model, f"{STAGE}.model"):
            tokenizer = AutoTokenizer.from_pretrained(config.model)
            model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype).to(device)
        if not tokenizer.chat_template:
            raise ModelLoadError(STAGE, config.model, "its tokenizer has no chat template", f"{STAGE}.model")
        return cls(config, model, tokenizer, device)

    @torch.no_grad()
    def answer(self, chats: list[Chat]) -> list[str | None]:
        if not chats:
            return []
        texts = [self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats]
        # The template already holds any start token the model wants.
        inputs = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False).to(self.device)
        with seeded(self.config.generation.seed, self.device):
            output = self.model.generate(
                **inputs, pad_token_id=self.tokenizer.pad_token_id, **hf_generate_kwargs(self.config.generation)
            )
        return self.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


class HttpLlm(LlmMerger):
    """An OpenAI-compatible /chat/completions endpoint; requests run `http.concurrency` at a time.

    Connection failures, timeouts, HTTP 429 and 5xx are retried with exponential backoff; other HTTP errors
    are not (a retry would get the same answer). Either way the failure ends as one EndpointError line.
    """

    def __init__(self, config: LlmConfig):
        super().__init__(config)
        if not config.http.url:
            raise ValueError(f"{STAGE}: backend http needs http.url")
        self.base_url = config.http.url.rstrip("/")
        key = os.environ.get(config.http.api_key_env, "") if config.http.api_key_env else ""
        self.headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})

    @classmethod
    def load(cls, config: LlmConfig) -> HttpLlm:
        """Check that the server answers and serves `model`, so a run never starts against a dead endpoint."""
        backend = cls(config)
        served = [entry.get("id") for entry in backend.request("GET", "/models").get("data", [])]
        if config.model not in served:
            raise EndpointError(
                f"{STAGE}: {backend.base_url} serves {served}, not {config.model!r}; set {STAGE}.model to one of them"
            )
        return backend

    def answer(self, chats: list[Chat]) -> list[str | None]:
        with ThreadPoolExecutor(max_workers=self.config.http.concurrency) as pool:
            return list(pool.map(self.complete, chats))

    def complete(self, chat: Chat) -> str | None:
        """The assistant's reply to one chat."""
        reply = self.request("POST", "/chat/completions", self.request_body(chat))
        try:
            return reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"{STAGE}: unexpected answer from {self.base_url}: {str(reply)[:200]}") from None

    def request_body(self, chat: Chat) -> dict:
        """Our generation settings in OpenAI terms; vLLM's extensions only where they differ from the default."""
        generation = self.config.generation
        body = {
            "model": self.config.model,
            "messages": chat,
            "max_tokens": generation.max_new_tokens,
            "temperature": generation.temperature if generation.do_sample else 0.0,
            "seed": generation.seed,
            "n": 1,
        }
        if generation.do_sample and generation.top_p is not None:
            body["top_p"] = generation.top_p
        if generation.do_sample and generation.top_k is not None:
            body["top_k"] = generation.top_k
        if generation.min_new_tokens:
            body["min_tokens"] = generation.min_new_tokens
        if generation.repetition_penalty != 1.0:
            body["repetition_penalty"] = generation.repetition_penalty
        return body

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One JSON request, retried on transient failures; EndpointError when it cannot succeed."""
        http_config = self.config.http
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        tries = http_config.retries + 1
        problem = ""
        for attempt in range(tries):
            if attempt:
                time.sleep(http_config.backoff_seconds * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, headers=self.headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=http_config.timeout_seconds) as response:
                    payload = response.read()
            except urllib.error.HTTPError as error:
                detail = " ".join(error.read().decode(errors="replace").split())[:200]
                problem = f"HTTP {error.code} {detail}".strip()
                if error.code != 429 and error.code < 500:
                    raise EndpointError(f"{STAGE}: {method} {url} failed: {problem}") from None
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
                problem = str(getattr(error, "reason", None) or error) or type(error).__name__
                continue
            try:
                return json.loads(payload)
            except json.JSONDecodeError:
                raise EndpointError(f"{STAGE}: {url} did not answer JSON: {payload[:200]!r}") from None
        raise EndpointError(
            f"{STAGE}: cannot reach the OpenAI-compatible endpoint {url} after {tries} "
            f"{'try' if tries == 1 else 'tries'} ({problem}); start the server (e.g. vllm serve {self.config.model}) "
            f"or fix {STAGE}.http.url"
        )
