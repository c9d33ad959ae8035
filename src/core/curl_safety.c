/* Outbound HTTP options shared by every transfer. See curl_safety.h. */
#include "core/curl_safety.h"

#include <fcntl.h>

/* Both curl and the spawning of tool servers run on the loop thread, so no
 * spawn can slip in between a socket's creation and this. */
static int on_socket_opened(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    (void)arg;
    (void)purpose;
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0)
        fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    return CURL_SOCKOPT_OK;
}

bool curl_safety_apply(CURL *easy)
{
    return curl_easy_setopt(easy, CURLOPT_SOCKOPTFUNCTION, on_socket_opened) == CURLE_OK &&
           curl_easy_setopt(easy, CURLOPT_NOPROXY, CURL_SAFETY_NO_PROXY) == CURLE_OK &&
           curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
           curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
           curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
}
