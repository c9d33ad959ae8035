/* libFuzzer harness: FIPA-ACL messages as JSON through validation, the
 * canonical form, copies and the protocol rules. */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "messaging/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *obj = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                             NULL);
    if (!obj)
        return 0;
    for (int origin = 0; origin < 2; origin++) {
        acl_message m;
        acl_problem problem;
        if (acl_message_from_json(obj, origin ? ACL_FROM_AGENT : ACL_FROM_API, 64 * 1024, &m,
                                  &problem) != 0)
            continue;
        json_t *back = acl_message_to_json(&m);
        json_decref(back);
        acl_message copy;
        if (acl_message_copy(&copy, &m) == 0) {
            acl_interaction it;
            char reason[256];
            if (acl_interaction_start(&m, &it)) {
                acl_interaction_advance(&it, &copy, m.reply_by_ms, reason, sizeof reason);
                acl_interaction_advance(&it, &copy, 0, reason, sizeof reason);
            }
            acl_message_clear(&copy);
        }
        acl_message_clear(&m);
    }
    json_decref(obj);
    return 0;
}
