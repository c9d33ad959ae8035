/* libFuzzer harness: provider answers (what an LLM server sends back) through
 * the OpenAI, Anthropic and Ollama parsers, embeddings answers (for two texts)
 * through the OpenAI and Ollama embeddings parsers, and error bodies through
 * the error-text extraction. The first input byte picks the parser. */
#include <stdint.h>
#include <stdlib.h>

#include "llm/llm_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    llm_answer answer = {0};
    const char *reason = NULL;
    char detail[512];
    llm_embedding embedding = {0};
    switch (data[0] % 6) {
    case 0: llm_openai_parse_answer(body, len, &answer, &reason, detail, sizeof detail); break;
    case 1: llm_anthropic_parse_answer(body, len, &answer, &reason, detail, sizeof detail); break;
    case 2: llm_ollama_parse_answer(body, len, &answer, &reason, detail, sizeof detail); break;
    case 4:
        llm_openai_parse_embeddings(body, len, 2, &embedding, &reason, detail, sizeof detail);
        break;
    case 5:
        llm_ollama_parse_embeddings(body, len, 2, &embedding, &reason, detail, sizeof detail);
        break;
    default: {
        char text[256];
        llm_error_text(body, len, "sk-secret-key", text, sizeof text);
    }
    }
    for (size_t i = 0; i < answer.tool_call_count; i++) {
        json_t *args = llm_call_arguments_object(&answer.tool_calls[i]);
        json_decref(args);
    }
    llm_answer_free(&answer);
    llm_embedding_free(&embedding);
    return 0;
}
