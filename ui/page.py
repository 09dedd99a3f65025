"""The chat page: a pure Gradio builder that also runs without Serve.

The conversation lives in the browser (``gr.BrowserState``, i.e. localStorage): each turn keeps
what the person saw and, for French turns, what the model saw in English, so nothing is
translated twice and a reload keeps everything.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.client import ApiError, stream_turn

Turn = dict[str, str]  # user, assistant, user_en, assistant_en, language

EXAMPLES = [
    "What should I cook tonight with rice and vegetables?",
    "Quel est le meilleur moment pour visiter Paris ?",
    "Give me three tips to sleep better.",
    "Peux-tu me conseiller un bon livre ?",
]


def to_messages(turns: list[Turn]) -> list[dict[str, str]]:
    """What the chat window shows: the conversation in the person's own language."""
    messages: list[dict[str, str]] = []
    for turn in turns:
        messages.append({"role": "user", "content": turn["user"]})
        messages.append({"role": "assistant", "content": turn["assistant"]})
    return messages


def to_history_en(turns: list[Turn]) -> list[dict[str, str]]:
    """What the model sees: the English side of every turn."""
    history: list[dict[str, str]] = []
    for turn in turns:
        history.append({"role": "user", "content": turn["user_en"]})
        history.append({"role": "assistant", "content": turn["assistant_en"]})
    return history


def build_demo(
    api_url: str, title: str = "Polyglot chat", storage_secret: str | None = None
) -> gr.Blocks:
    async def respond(message: str, turns: list[Turn] | None):
        turns = list(turns or [])
        if not (message or "").strip():
            gr.Warning("Type a message first.")
            yield to_messages(turns), turns, message
            return
        shown = to_messages(turns) + [
            {"role": "user", "content": message},
            {"role": "assistant", "content": ""},
        ]
        yield shown, turns, ""
        reply = ""
        try:
            async for event in stream_turn(api_url, message, to_history_en(turns)):
                if event["type"] == "delta":
                    reply += event["text"]
                    shown[-1] = {"role": "assistant", "content": reply}
                    yield shown, turns, ""
                elif event["type"] == "done":
                    turns.append(
                        {
                            "user": message,
                            "assistant": event["reply"],
                            "user_en": event["message_en"],
                            "assistant_en": event["reply_en"],
                            "language": event["language"],
                        }
                    )
                    yield to_messages(turns), turns, ""
        except ApiError as error:  # the page's one edge: a toast, and the message back in the box
            gr.Warning(error.message)
            yield to_messages(turns), turns, message

    def clear() -> tuple[list, list]:
        return [], []

    with gr.Blocks(title=title, fill_height=True) as demo:
        gr.Markdown(f"## {title}\nChat in English or French: replies come in your language.")
        turns_state = gr.BrowserState([], storage_key="polyglot-chat-turns", secret=storage_secret)
        chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="chatbot", buttons=["copy"])
        with gr.Row():
            box = gr.Textbox(
                placeholder="Écrivez en français or write in English…",
                show_label=False,
                scale=6,
                elem_id="message",
                autofocus=True,
            )
            send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            stop = gr.Button("Stop", scale=1, elem_id="stop")
            clear_button = gr.Button("Clear", scale=1, elem_id="clear")
        gr.Examples(EXAMPLES, inputs=box, label="Try")

        # concurrency_limit=None: Serve's max_ongoing/max_queued_requests do the backpressure.
        submit_args: dict[str, Any] = dict(
            fn=respond,
            inputs=[box, turns_state],
            outputs=[chatbot, turns_state, box],
            concurrency_limit=None,
            api_name="chat",
        )
        on_send = send.click(**submit_args)
        on_enter = box.submit(**{**submit_args, "api_name": False})
        stop.click(None, cancels=[on_send, on_enter])
        clear_button.click(clear, outputs=[chatbot, turns_state], api_name=False)
        chatbot.clear(clear, outputs=[chatbot, turns_state], api_name=False)  # its own trash icon
        demo.load(to_messages, inputs=turns_state, outputs=chatbot, api_name=False)
    return demo
