"""The LLM merge: prompt, local transformers backend, and the OpenAI-compatible HTTP backend over real HTTP.

The HTTP tests start a small OpenAI-compatible server on 127.0.0.1 (written here, stdlib only) that answers
/v1/chat/completions with the same tiny LLM, so the HTTP backend must give exactly the local backend's captions.
"""

import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from curation.captions.llm import EndpointError, HttpLlm, LocalLlm, load_llm, merge_messages
from curation.captions.text import EMPTY, NO_INPUT, OK, Caption
from curation.config import CurationConfig, GenerationConfig, LlmConfig, LlmHttpConfig
from curation.config_io import ConfigError, load_config
from curation.errors import ModelLoadError

GREEDY = GenerationConfig(max_new_tokens=10)
COCA = ["a man walking on a street", "a dog on the beach", None, "two people at a table in a kitchen"]
VBLIP = ["a man is walking in the city", "a dog running into the sea", "a cat", "people eating"]
SERVED_NAME = "tiny-chat"


def local(model: str, generation: GenerationConfig = GREEDY, batch_size: int = 32) -> LocalLlm:
    return LocalLlm.load(LlmConfig(model=model, generation=generation, batch_size=batch_size, device="cpu"))


def http_config(url: str, generation: GenerationConfig = GREEDY, **http) -> LlmConfig:
    settings = {"timeout_seconds": 10.0, "retries": 0, "backoff_seconds": 0.01} | http
    return LlmConfig(backend="http", model=SERVED_NAME, generation=generation, http=LlmHttpConfig(url=url, **settings))


class ChatServer:
    """An OpenAI-compatible server for the tests: /v1/models and greedy /v1/chat/completions with a local model.

    `fail` lists HTTP statuses to answer the next chat requests with, before answering normally.
    """

    def __init__(self, model_dir: str, fail: tuple[int, ...] = ()):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.fail = list(fail)
        self.bodies: list[dict] = []
        self.lock = threading.Lock()

    def reply(self, body: dict) -> str:
        text = self.tokenizer.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with self.lock, torch.no_grad():
            output = self.model.generate(
                **inputs, max_new_tokens=body["max_tokens"], do_sample=False, pad_token_id=self.tokenizer.pad_token_id
            )
        return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    @contextmanager
    def running(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/v1/models":
                    return self.answer(404, {"error": "not found"})
                self.answer(200, {"object": "list", "data": [{"id": SERVED_NAME, "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    status = server.fail.pop(0) if server.fail else None
                if status is not None:
                    return self.answer(status, {"error": {"message": f"test failure {status}"}})
                if self.path != "/v1/chat/completions" or body.get("temperature") != 0.0:
                    return self.answer(400, {"error": {"message": "this test server decodes greedily only"}})
                message = {"role": "assistant", "content": server.reply(body)}
                self.answer(200, {"object": "chat.completion", "choices": [{"index": 0, "message": message}]})

            def answer(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- prompt ---------------------------------------------------------------------------------------------------


def test_merge_prompt_contains_both_captions(llm_model):
    config = LlmConfig()
    messages = merge_messages("a cat on a sofa", "a cat jumps off a sofa", config)
    assert messages[0] == {"role": "system", "content": config.system_prompt}
    assert messages[1]["role"] == "user"
    assert "a cat on a sofa" in messages[1]["content"] and "a cat jumps off a sofa" in messages[1]["content"]
    rendered = local(llm_model).tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "a cat on a sofa" in rendered and "a cat jumps off a sofa" in rendered
    assert merge_messages("x", "y", LlmConfig(system_prompt=""))[0]["role"] == "user"


def test_prompt_from_config_fills_both_fields():
    config = LlmConfig(prompt="Frame: {coca} | Clip: {vblip} | {{literal braces}}")
    assert merge_messages("A", "B", config)[-1]["content"] == "Frame: A | Clip: B | {literal braces}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("caption.llm.prompt=Only {coca}", "prompt must use exactly the fields {coca} and {vblip}, found ['coca']"),
        ("caption.llm.prompt={coca} {vblip} {other}", "found ['coca', 'other', 'vblip']"),
        ("caption.llm.backend=http", "backend http needs http.url"),
        ("caption.llm.generation.do_sample=true", None),
        ("caption.coca.generation.do_sample=true", "num_beams=6 with do_sample=true: choose beams or sampling"),
    ],
)
def test_caption_config_checks(override, message):
    if message is None:
        assert load_config(CurationConfig, None, [override]).caption.llm.generation.do_sample
        return
    with pytest.raises(ConfigError, match="caption") as error:
        load_config(CurationConfig, None, [override])
    assert message in str(error.value)


def test_http_backend_does_no_beam_search():
    with pytest.raises(ValueError, match="do not do beam search"):
        http_config("http://127.0.0.1:1/v1", GenerationConfig(num_beams=2))


# --- local backend --------------------------------------------------------------------------------------------


def test_local_batched_equals_one_by_one(llm_model):
    merger = local(llm_model)
    batched = merger(COCA, VBLIP)
    assert batched[2] == Caption(None, NO_INPUT)  # no CoCa caption: nothing to merge
    assert [merger([coca], [vblip])[0] for coca, vblip in zip(COCA, VBLIP, strict=True)] == batched
    assert local(llm_model, batch_size=2)(COCA, VBLIP) == batched  # prompts of other lengths alongside
    assert {caption.status for caption in batched[:2] + batched[3:]} <= {OK, EMPTY}
    assert len({caption.text for caption in batched}) > 2


def test_local_sampling_is_deterministic_with_a_seed(llm_model):
    sampled = GenerationConfig(max_new_tokens=10, do_sample=True, temperature=1.5, seed=1)
    first = local(llm_model, sampled)(COCA, VBLIP)
    assert local(llm_model, sampled)(COCA, VBLIP) == first
    assert local(llm_model, sampled.model_copy(update={"seed": 2}))(COCA, VBLIP) != first


def test_mismatched_caption_lists_are_refused(llm_model):
    with pytest.raises(ValueError, match="2 CoCa captions but 1 VideoBLIP captions"):
        local(llm_model)(["a", "b"], ["c"])


def test_local_model_that_cannot_be_loaded(tmp_path):
    with pytest.raises(ModelLoadError) as error:
        load_llm(LlmConfig(model=str(tmp_path / "missing"), device="cpu"))
    assert str(error.value).startswith(f"caption.llm: cannot load model '{tmp_path / 'missing'}'")
    assert "--set caption.llm.model=PATH" in str(error.value)


def test_local_model_without_chat_template(llm_model, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(llm_model)
    tokenizer.chat_template = None
    AutoModelForCausalLM.from_pretrained(llm_model).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="its tokenizer has no chat template"):
        load_llm(LlmConfig(model=str(tmp_path), device="cpu"))


# --- HTTP backend ---------------------------------------------------------------------------------------------


def test_http_backend_gives_the_local_captions(llm_model):
    server = ChatServer(llm_model)
    with server.running() as url:
        merger = load_llm(http_config(url, concurrency=3))
        assert isinstance(merger, HttpLlm)
        assert merger(COCA, VBLIP) == local(llm_model)(COCA, VBLIP)
    assert len(server.bodies) == 3  # one request per clip that has both captions
    assert all(body["model"] == SERVED_NAME and body["max_tokens"] == GREEDY.max_new_tokens for body in server.bodies)
    assert merge_messages(COCA[0], VBLIP[0], LlmConfig()) in [body["messages"] for body in server.bodies]


def test_http_sends_sampling_settings():
    config = http_config("http://127.0.0.1:1/v1", GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, seed=4))
    body = HttpLlm(config).request_body([{"role": "user", "content": "hi"}])
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and body["seed"] == 4
    assert "top_k" not in body and "min_tokens" not in body and "repetition_penalty" not in body


def test_http_retries_server_errors(llm_model):
    server = ChatServer(llm_model, fail=(503, 500))
    with server.running() as url:
        caption = load_llm(http_config(url, retries=2))([COCA[0]], [VBLIP[0]])
    assert caption == local(llm_model)([COCA[0]], [VBLIP[0]])
    assert len(server.bodies) == 3


def test_http_gives_up_after_the_retries(llm_model):
    server = ChatServer(llm_model, fail=(503, 503))
    with server.running() as url, pytest.raises(EndpointError) as error:
        load_llm(http_config(url, retries=1))([COCA[0]], [VBLIP[0]])
    assert "after 2 tries (HTTP 503" in str(error.value)
    assert len(server.bodies) == 2


def test_http_client_errors_are_not_retried(llm_model):
    server = ChatServer(llm_model, fail=(400,))
    with server.running() as url, pytest.raises(EndpointError, match="HTTP 400 .*test failure 400"):
        load_llm(http_config(url, retries=3))([COCA[0]], [VBLIP[0]])
    assert len(server.bodies) == 1


def test_http_model_not_served(llm_model):
    with ChatServer(llm_model).running() as url, pytest.raises(EndpointError) as error:
        load_llm(http_config(url).model_copy(update={"model": "other-model"}))
    assert f"{url} serves ['{SERVED_NAME}'], not 'other-model'" in str(error.value)


def test_unreachable_endpoint_gives_a_clear_error_quickly():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()
    with pytest.raises(EndpointError) as error:
        load_llm(http_config(url, retries=2, backoff_seconds=0.01))
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert message.startswith(f"caption.llm: cannot reach the OpenAI-compatible endpoint {url}/models after 3 tries (")
    assert "refused" in message.lower()
    assert "vllm serve tiny-chat" in message and "\n" not in message
