/*
 * epoll_echo: a plain TCP echo server in C, the reference bench/run.py
 * measures echoloop against.
 *
 *     cc -O2 -o epoll_echo epoll_echo.c && ./epoll_echo 127.0.0.1:0
 *
 * One thread, one epoll instance, every socket non-blocking and registered
 * edge-triggered for input and output at once (so epoll_ctl is called once
 * per connection). On each event: accept until EAGAIN; read into one 64 KiB
 * buffer until EAGAIN, writing each read straight back. Like echoloop, it
 * takes edge-triggered epoll's shortcut: a short read means the socket is
 * drained (unless the event says the peer closed: EPOLLRDHUP, then read on
 * to end of stream) and a short write means the send buffer is full, so the
 * call that would only return EAGAIN is skipped — the fair floor to compare
 * a loop against. Bytes the socket
 * does not take are kept in that connection's own buffer, reading stops
 * (TCP flow control then slows the client) and the loop waits for EPOLLOUT;
 * once they are written, reading resumes where it stopped. At end of input
 * everything is echoed, then the connection is closed. Any error closes
 * that connection only. Prints "listening on ADDR" once bound; runs until
 * killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MAX_EVENTS 256
#define USAGE "usage: epoll_echo IPV4:PORT (e.g. 127.0.0.1:0)\n"

struct conn {
    int fd;
    int eof;          /* the client has shut down its sending side */
    size_t off, len;  /* unsent bytes: pending[off..len] */
    char *pending;    /* allocated on the first partial write */
};

static char buf[BUF_SIZE];

static void die(const char *what) { perror(what); exit(1); }

static void drop(struct conn *c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c->pending);
    free(c);
}

/* Writes what is pending; returns -1 on error, 0 if bytes remain, 1 if done. */
static int flush(struct conn *c) {
    while (c->off < c->len) {
        ssize_t n = write(c->fd, c->pending + c->off, c->len - c->off);
        if (n > 0) {
            c->off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return 0;
        } else {
            return -1;
        }
    }
    c->off = c->len = 0;
    return 1;
}

/* Echoes buf[0..n]; what the socket does not take goes to c->pending.
 * Returns -1 on error, 0 if bytes are pending, 1 if all was written. */
static int echo(struct conn *c, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(c->fd, buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return -1;
        if (w > 0)
            done += (size_t)w;
        if (w < 0 || done < n) { /* EAGAIN, or a short write: buffer full */
            if (done == n)
                break;
            if (!c->pending && !(c->pending = malloc(BUF_SIZE)))
                return -1;
            memcpy(c->pending, buf + done, n - done);
            c->off = 0;
            c->len = n - done;
            return 0;
        }
    }
    return 1;
}

/* Serves one event; returns -1 when the connection is to be closed. */
static int serve(struct conn *c, unsigned events) {
    if (events & EPOLLERR)
        return -1;
    if (c->len) { /* waiting for EPOLLOUT: read nothing until flushed */
        int f = flush(c);
        if (f <= 0)
            return f;
    }
    while (!c->eof) { /* edge-triggered: read until EAGAIN */
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n > 0) {
            int e = echo(c, (size_t)n);
            if (e <= 0)
                return e;
            if ((size_t)n < sizeof buf && !(events & EPOLLRDHUP))
                return 0; /* a short read: drained (edge-triggered epoll) */
        } else if (n == 0) {
            c->eof = 1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN) {
            return 0;
        } else {
            return -1;
        }
    }
    return -1; /* end of input and everything echoed: close */
}

static int listen_on(const char *arg) {
    char host[64];
    const char *colon = strrchr(arg, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (!colon || (size_t)(colon - arg) >= sizeof host) {
        fputs(USAGE, stderr);
        exit(2);
    }
    memcpy(host, arg, (size_t)(colon - arg));
    host[colon - arg] = 0;
    sa.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "epoll_echo: not an IPv4 address: %s\n", host);
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(fd, 4096) < 0)
        die("listen");
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        die("getsockname");
    printf("listening on %s:%d\n", inet_ntoa(sa.sin_addr), ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

/* Accepts until EAGAIN; returns 1 after an error such as EMFILE (retry later). */
static int accept_all(int ep, int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN)
                return 0;
            perror("accept4"); /* EMFILE and the like: retry in 100 ms */
            return 1;
        }
        struct conn *c = calloc(1, sizeof *c);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
        if (!c)
            return close(fd), 1;
        c->fd = fd;
        ev.data.ptr = c;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            drop(c);
    }
}

int main(int argc, char **argv) {
    if (argc != 2)
        return fputs(USAGE, stderr), 2;
    int lfd = listen_on(argv[1]);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    struct epoll_event events[MAX_EVENTS];
    int starved = 0; /* accept failed (EMFILE...): retry every 100 ms */
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
        die("epoll");
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, starved ? 100 : -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        if (starved)
            starved = accept_all(ep, lfd);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c)
                starved = accept_all(ep, lfd);
            else if (serve(c, events[i].events) < 0)
                drop(c);
        }
    }
}
