"""The mail edge: SMTP, IMAP and HTTP upload in; SMTP out; raw mail never lost."""
