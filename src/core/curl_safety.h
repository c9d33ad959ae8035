/* The options every outbound HTTP transfer of the server gets (LLM
 * providers, MCP servers over HTTP), in one place so they cannot drift:
 * sockets close-on-exec (the curl of Debian 12 does not open them so, and
 * the server spawns tool servers), no proxy for loopback, no redirects, no
 * signals, http and https only. */
#ifndef CAXTON_CORE_CURL_SAFETY_H
#define CAXTON_CORE_CURL_SAFETY_H

#include <curl/curl.h>
#include <stdbool.h>

#define CURL_SAFETY_NO_PROXY "localhost,127.0.0.0/8,::1/128"

/* Sets the options above on an easy handle; false if one is refused. */
bool curl_safety_apply(CURL *easy);

#endif
