/*
 * fwx-gateway: journald log lines and sd_notify (service.h says what each is for).
 * SPDX-License-Identifier: MIT
 */
#include "service.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

bool svc_journal_stream(int fd)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    char tail;
    struct stat st;
    if (e == NULL || sscanf(e, "%llu:%llu%c", &dev, &ino, &tail) != 2 || fstat(fd, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int svc_syslog_priority(fwx_log_level level)
{
    switch (level) {
    case FWX_LOG_ERROR:
        return LOG_ERR;
    case FWX_LOG_WARN:
        return LOG_WARNING;
    case FWX_LOG_INFO:
        return LOG_INFO;
    default:
        return LOG_DEBUG;
    }
}

void svc_journal_line(FILE *f, fwx_log_level level, const char *msg)
{
    int prio = svc_syslog_priority(level);
    do {
        size_t n = strcspn(msg, "\n");
        fprintf(f, "<%d>%.*s\n", prio, (int)n, msg);
        msg += n;
    } while (*msg != '\0' && *++msg != '\0');
    fflush(f);
}

int svc_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof sa.sun_path) {
        errno = EINVAL;
        return -1;
    }
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace: the address is exactly len bytes */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* One datagram, not blocking: a manager that does not read must not stall the loop. */
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, salen);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)strlen(state) ? 0 : -1;
}

int svc_notify_reloading(void)
{
    struct timespec now;
    char msg[64];
    clock_gettime(CLOCK_MONOTONIC, &now);
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)now.tv_sec * 1000000ull + (unsigned long long)now.tv_nsec / 1000);
    return svc_notify(msg);
}
