/* FIPA-ACL messages: the JSON form, its validation, and the protocol rules
 * of the common FIPA interaction protocols (docs/messaging.md).
 *
 * Pure: no I/O, no globals except the constant tables; safe on any thread.
 * The router (router.c) owns queues and delivery; this file only says what a
 * message is and whether a message fits its conversation. */
#ifndef CAXTON_MESSAGING_MESSAGE_H
#define CAXTON_MESSAGING_MESSAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define ACL_ID_MAX 128          /* message_id, conversation_id, reply_with, in_reply_to */
#define ACL_NAME_MAX 128        /* sender, receiver, capability */
#define ACL_FREE_TEXT_MAX 256   /* language, ontology */
#define ACL_UUID_LEN 36
#define ACL_CONTENT_DEPTH_MAX 256 /* nesting of arrays/objects inside content */

typedef enum acl_performative {
    ACL_REQUEST,
    ACL_INFORM,
    ACL_QUERY_IF,
    ACL_QUERY_REF,
    ACL_PROPOSE,
    ACL_ACCEPT_PROPOSAL,
    ACL_REJECT_PROPOSAL,
    ACL_AGREE,
    ACL_REFUSE,
    ACL_FAILURE,
    ACL_NOT_UNDERSTOOD,
    ACL_CFP,
    ACL_CANCEL,
    ACL_SUBSCRIBE,
    ACL_CONFIRM,
    ACL_DISCONFIRM,
    ACL_PERFORMATIVE_COUNT
} acl_performative;

typedef enum acl_protocol {
    ACL_PROTOCOL_NONE,
    ACL_PROTOCOL_REQUEST,      /* fipa-request */
    ACL_PROTOCOL_QUERY,        /* fipa-query */
    ACL_PROTOCOL_CONTRACT_NET, /* fipa-contract-net */
} acl_protocol;

typedef enum acl_priority { ACL_PRIORITY_LOW, ACL_PRIORITY_NORMAL, ACL_PRIORITY_HIGH } acl_priority;

/* A validated message. Strings are owned; optional ones are NULL when absent. */
typedef struct acl_message {
    char message_id[ACL_ID_MAX + 1];
    acl_performative performative;
    char *sender;
    char *receiver;        /* exactly one of receiver / capability */
    char *capability;
    json_t *content;       /* any JSON value; NULL only for cancel */
    char conversation_id[ACL_ID_MAX + 1]; /* "" when absent (the router creates one) */
    char *reply_with;
    char *in_reply_to;
    uint64_t reply_by_ms;  /* epoch ms; 0 = none */
    acl_protocol protocol;
    char *language;
    char *ontology;
    acl_priority priority;
} acl_message;

/* Where the message comes from, which decides what `sender` may be. */
typedef enum acl_origin {
    ACL_FROM_API,   /* sender must be "external:<client>" (added as "external:api" when absent) */
    ACL_FROM_AGENT, /* sender is set by the router to the agent's name */
} acl_origin;

/* One refusal: the field at fault and why ("performative", "unknown
 * performative 'reqest'; did you mean 'request'?"). */
typedef struct acl_problem {
    char field[64];
    char reason[512];
} acl_problem;

/* Validates a JSON object into *out. Fills in message_id (UUID v4) when
 * absent. Checks: known fields only (unknown ones are refused with did you
 * mean), performative known (case-insensitive, '_' for '-'), exactly one of
 * receiver/capability, names well-formed and bounded, content present unless
 * cancel, reply_by RFC 3339, protocol and priority known, sender != receiver,
 * the serialized message within max_size bytes. Returns 0, or CX_EINVAL /
 * CX_ETOOBIG with *problem filled. */
int acl_message_from_json(const json_t *obj, acl_origin origin, size_t max_size,
                          acl_message *out, acl_problem *problem);
void acl_message_clear(acl_message *m);
/* Deep copy; 0 or CX_ENOMEM. */
int acl_message_copy(acl_message *dst, const acl_message *src);
/* The canonical JSON form (every present field; performative and protocol
 * as their names, reply_by as RFC 3339 UTC). */
json_t *acl_message_to_json(const acl_message *m);

const char *acl_performative_name(acl_performative p); /* "query-if" */
/* Case-insensitive, '_' accepted for '-'. -1 when unknown. */
int acl_performative_parse(const char *text);
const char *acl_protocol_name(acl_protocol p);         /* "fipa-request", "" for none */
int acl_protocol_parse(const char *text);              /* -1 when unknown */
const char *acl_priority_name(acl_priority p);
int acl_priority_parse(const char *text);              /* -1 when unknown */

/* A fresh UUID v4 in canonical text form (36 chars + NUL). */
int acl_uuid_v4(char out[ACL_UUID_LEN + 1], cx_error *err);

/* ---- Protocol rules ----------------------------------------------------------------------------
 * The state of one interaction (a request and its answers) inside a
 * conversation, keyed by the initiating message's reply_with (or message_id).
 *
 * fipa-request:  request -> agree | refuse | not-understood | inform | failure;
 *                after agree -> inform | failure.
 * fipa-query:    query-if | query-ref -> inform | refuse | failure | not-understood.
 * fipa-contract-net: cfp -> propose | refuse | not-understood (before reply_by);
 *                propose -> accept-proposal | reject-proposal (by the initiator);
 *                after accept-proposal -> inform | failure.
 * cancel ends any interaction. Messages outside a protocol are not checked. */
typedef enum acl_step {
    ACL_STEP_OPEN,       /* initiated, waiting for a first answer */
    ACL_STEP_AGREED,     /* request agreed, waiting for the result */
    ACL_STEP_PROPOSED,   /* contract net: a proposal waits for accept/reject */
    ACL_STEP_ACCEPTED,   /* contract net: accepted, waiting for the result */
    ACL_STEP_DONE,       /* finished (inform, failure, refuse, reject, cancel) */
} acl_step;

typedef struct acl_interaction {
    acl_protocol protocol;
    acl_performative opened_by;
    acl_step step;
    uint64_t reply_by_ms; /* bidding deadline for cfp; 0 = none */
} acl_interaction;

/* Starts an interaction for an initiating message (request, query-if,
 * query-ref, cfp with their protocol, or any message with protocol set).
 * Returns false when the message does not start one (e.g. an inform with no
 * protocol), which is fine: it is not checked. */
bool acl_interaction_start(const acl_message *m, acl_interaction *out);
/* Checks a reply (a message whose in_reply_to names the interaction) at time
 * now_ms against the interaction, and advances it when it fits. Returns 0, or
 * CX_EINVAL with reason filled ("'propose' does not answer a 'request' in
 * fipa-request; expected agree, refuse, inform or failure"); the router then
 * answers the sender with not-understood and that reason. */
int acl_interaction_advance(acl_interaction *it, const acl_message *reply, uint64_t now_ms,
                            char *reason, size_t reason_size);

#endif
