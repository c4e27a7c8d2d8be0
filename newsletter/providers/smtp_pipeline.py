"""One SMTP transaction (MAIL, RCPT, DATA, the message), pipelined when the server allows it.

smtplib's sendmail waits for the reply to each command before the next: three round trips
before the message goes. A server that offers PIPELINING (RFC 2920: Postfix, Exim and every
large relay) takes MAIL, RCPT and DATA in one write and answers them in order; the message
follows the 354. Same commands, same replies, a third of the waiting and of smtplib's work
per message. The message comes dot-stuffed already (OutgoingMessage.as_bytes(stuffed=True):
a campaign's parts are stuffed once, not each message). Failures raise what sendmail raises,
so the provider maps every one of them one way, pipelined or not.
"""

from __future__ import annotations

import contextlib
import smtplib

_OK = (250, 251)


def send(conn: smtplib.SMTP, sender: str, recipient: str, stuffed: bytes, options) -> None:
    """Hand one message to `conn` for `recipient`; raises smtplib's exceptions as sendmail does.

    `stuffed` is the message with CRLF line ends, dot-stuffed, without the final ".".
    """
    esmtp = list(options)
    if conn.has_extn("size"):  # RFC 1870; the stuffing dots make it a few octets high
        esmtp.insert(0, f"SIZE={len(stuffed)}")
    encoding = "utf-8" if any(o.upper() == "SMTPUTF8" for o in esmtp) else "ascii"
    commands = [
        f"MAIL FROM:{smtplib.quoteaddr(sender)}" + "".join(f" {o}" for o in esmtp),
        f"RCPT TO:{smtplib.quoteaddr(recipient)}",
        "DATA",
    ]
    replies: list[tuple[int, bytes]] = []
    if conn.has_extn("pipelining"):
        conn.send("".join(f"{c}\r\n" for c in commands).encode(encoding))
        for _ in commands:  # all three answer, unless the server is closing (421)
            replies.append(conn.getreply())
            if replies[-1][0] == 421:
                break
    else:
        for command in commands:  # one by one, stopping at the first refusal
            conn.send(f"{command}\r\n".encode(encoding))
            replies.append(conn.getreply())
            if replies[-1][0] not in (*_OK, 354):
                break
    mail, rcpt, data = [*replies, None, None][:3]
    if data is not None and data[0] == 354 and not (mail[0] == 250 and rcpt[0] in _OK):
        # RFC 2920 has the server refuse DATA then; one that did not gets an empty message
        # ended at once, so nothing is delivered, and the refusal stands.
        conn.send(b".\r\n")
        conn.getreply()
    if mail[0] != 250:
        _end(conn, mail[0])
        raise smtplib.SMTPSenderRefused(*mail, sender)
    if rcpt[0] not in _OK:
        _end(conn, rcpt[0])
        raise smtplib.SMTPRecipientsRefused({recipient: rcpt})
    if data[0] != 354:
        _end(conn, data[0])
        raise smtplib.SMTPDataError(*data)
    end = b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n"
    conn.send(stuffed + end)
    final = conn.getreply()
    if final[0] != 250:
        _end(conn, final[0])
        raise smtplib.SMTPDataError(*final)


def _end(conn: smtplib.SMTP, code: int) -> None:
    """After a refusal, as sendmail: close when the server is closing, else RSET."""
    if code == 421:
        conn.close()
    else:
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            conn.rset()
