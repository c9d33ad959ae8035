/* libFuzzer harness: agent definition files through the parser, the
 * validator, the JSON view, the prompt renderer and the fixer. Any crash,
 * leak, undefined behaviour or hang is a finding. */
#include <stdint.h>
#include <stdlib.h>

#include "agents/agentdef.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const providers[] = {"openai", "local"};
    static const char *const tools[] = {"files.read_file", "web.fetch"};
    agentdef_context ctx = {
        .providers = providers,
        .provider_count = 2,
        .tools = tools,
        .tool_count = 2,
        .tools_checked = size % 2 == 0,
    };
    agentdef_diags diags = {0};
    agent_def *def = agentdef_parse("fuzz.md", (const char *)data, size, &ctx, &diags);
    char *text = NULL;
    agentdef_diags_format(&diags, "fuzz.md", &text);
    free(text);
    json_decref(agentdef_diags_json(&diags));
    if (def) {
        json_decref(agentdef_to_json(def));
        free(agentdef_render_prompt(def, "memories"));
        agentdef_free(def);
    } else if (diags.errors > 0 && size < 4096) {
        free(agentdef_fix_suggestions("fuzz.md", (const char *)data, size, &ctx, NULL));
    }
    agentdef_diags_free(&diags);
    return 0;
}
