/*
 * udp_echo: a plain UDP echo server in C (RFC 862, section 2), the reference
 * bench/run.py measures echoloop's UDP side against.
 *
 *     cc -O2 -o udp_echo udp_echo.c && ./udp_echo [--buffers BYTES] 127.0.0.1:0
 *
 * --buffers asks for SO_RCVBUF and SO_SNDBUF of BYTES (echoloop asks for
 * 4194304), so the two can be compared with equal socket buffers; without
 * it the socket keeps the system's defaults. The kernel caps the request at
 * net.core.rmem_max/wmem_max, as it does echoloop's.
 *
 * One non-blocking UDP socket, registered edge-triggered with epoll. On each
 * event: recvfrom into one 65,536-byte buffer (larger than any datagram, so
 * none is truncated) until EAGAIN, and sendto each datagram straight back to
 * its source. A datagram the socket cannot send now (EAGAIN, ENOBUFS) is
 * dropped and counted: UDP promises nothing, and a queue would be unbounded
 * memory. Errors reported on the socket (an ICMP port unreachable surfacing
 * as ECONNREFUSED where the system reports it; Linux does not, to an
 * unconnected socket) are counted and never stop the service. Prints
 * "listening on ADDR" once bound; on SIGTERM or SIGINT prints its counts to
 * stderr and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define USAGE "usage: udp_echo [--buffers BYTES] IPV4:PORT (e.g. 127.0.0.1:0)\n"

static char buf[65536];
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void die(const char *what) { perror(what); exit(1); }

static int bind_udp(const char *arg, int buffers) {
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
        fprintf(stderr, "udp_echo: not an IPv4 address: %s\n", host);
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (buffers > 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffers, sizeof buffers) < 0 ||
                        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffers, sizeof buffers) < 0))
        die("setsockopt SO_RCVBUF/SO_SNDBUF");
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        die("getsockname");
    printf("listening on %s:%d\n", inet_ntoa(sa.sin_addr), ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv) {
    unsigned long long echoed = 0, dropped = 0, errors = 0;
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: wakes epoll_wait */
    int buffers = 0;
    if (argc == 4 && strcmp(argv[1], "--buffers") == 0) {
        char *end;
        long n = strtol(argv[2], &end, 10);
        if (*end || n <= 0 || n > 1 << 30)
            return fprintf(stderr, "udp_echo: --buffers: not a size in bytes: %s\n", argv[2]), 2;
        buffers = (int)n;
        argv += 2, argc -= 2;
    }
    if (argc != 2)
        return fputs(USAGE, stderr), 2;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int fd = bind_udp(argv[1], buffers);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET}, out;
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll");
    while (!stop) {
        if (epoll_wait(ep, &out, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        while (!stop) { /* edge-triggered: receive until EAGAIN */
            struct sockaddr_storage from;
            socklen_t flen = sizeof from;
            ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
            if (n < 0) {
                if (errno == EAGAIN)
                    break;
                if (errno != EINTR)
                    errors++; /* ECONNREFUSED and the like: go on */
                continue;
            }
            if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen) == n)
                echoed++;
            else if (errno == EAGAIN || errno == ENOBUFS)
                dropped++;
            else
                errors++;
        }
    }
    fprintf(stderr, "udp_echo: echoed %llu, dropped %llu, errors %llu\n", echoed, dropped, errors);
    return 0;
}
