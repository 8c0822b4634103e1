"""Replies as each family of mail clients writes them, for the reply-trimming tests and
``bench/hygiene.py``: written for mailgate from the clients' formats (the header block
an Outlook writes in each language, the intro line of Gmail, Apple Mail, Yandex and
Mail.ru, and the HTML elements webmail wraps the quote in), not copied from any mail.

Each case is (client, raw mail, the text a person sees as the reply)."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

REPLY = "Bedankt, het werkt nu weer."
QUOTED = "Heeft u de printer al opnieuw opgestart?"
SUPPORT = "Support <support@example.com>"

# (client, the lines a client writes between the reply and the quoted text)
PLAIN_HEADERS: list[tuple[str, str]] = [
    ("outlook-en", f"From: {SUPPORT}\nSent: Monday, March 2, 2026 10:12 AM\nTo: Jan Klant "
     "<jan@klant.nl>\nSubject: RE: Printer"),
    ("outlook-nl", f"Van: {SUPPORT}\nVerzonden: maandag 2 maart 2026 10:12\nAan: Jan Klant\n"
     "Onderwerp: RE: Printer"),
    ("outlook-de", f"Von: {SUPPORT}\nGesendet: Montag, 2. März 2026 10:12\nAn: Jan Klant\n"
     "Betreff: AW: Printer"),
    ("outlook-fr", f"De : {SUPPORT}\nEnvoyé : lundi 2 mars 2026 10:12\nÀ : Jan Klant\n"
     "Objet : RE: Printer"),
    ("outlook-es", f"De: {SUPPORT}\nEnviado: lunes, 2 de marzo de 2026 10:12\nPara: Jan Klant\n"
     "Asunto: RE: Printer"),
    ("outlook-it", f"Da: {SUPPORT}\nInviato: lunedì 2 marzo 2026 10:12\nA: Jan Klant\n"
     "Oggetto: R: Printer"),
    ("outlook-pt", f"De: {SUPPORT}\nEnviada em: segunda-feira, 2 de março de 2026 10:12\n"
     "Para: Jan Klant\nAssunto: RE: Printer"),
    ("outlook-sv", f"Från: {SUPPORT}\nSkickat: den 2 mars 2026 10:12\nTill: Jan Klant\n"
     "Ämne: SV: Printer"),
    ("outlook-da", f"Fra: {SUPPORT}\nSendt: 2. marts 2026 10:12\nTil: Jan Klant\n"
     "Emne: SV: Printer"),
    ("outlook-pl", f"Od: {SUPPORT}\nWysłano: poniedziałek, 2 marca 2026 10:12\nDo: Jan Klant\n"
     "Temat: RE: Printer"),
    ("outlook-ru", f"От: {SUPPORT}\nОтправлено: 2 марта 2026 г. 10:12\nКому: Jan Klant\n"
     "Тема: RE: Printer"),
    ("outlook-fi", f"Lähettäjä: {SUPPORT}\nLähetetty: maanantai 2. maaliskuuta 2026 10.12\n"
     "Vastaanottaja: Jan Klant\nAihe: VS: Printer"),
    ("outlook-ja", f"差出人: {SUPPORT}\n送信日時: 2026年3月2日 10:12\n宛先: Jan Klant\n"
     "件名: RE: Printer"),
    ("outlook-zh", f"发件人: {SUPPORT}\n发送时间: 2026年3月2日 10:12\n收件人: Jan Klant\n"
     "主题: 回复: Printer"),
    ("gmail-en", f"On Mon, 2 Mar 2026 at 10:12, {SUPPORT} wrote:"),
    ("gmail-ja", f"2026年3月2日(月) 10:12 {SUPPORT}:"),
    ("gmail-ru", f"пн, 2 мар. 2026 г. в 10:12, {SUPPORT}:"),
    ("gmail-zh", f"{SUPPORT} 于2026年3月2日周一 10:12写道："),
    ("gmail-pl", f"W dniu pon., 2 mar 2026 o 10:12 {SUPPORT} napisał(a):"),
    ("gmail-ko", f"2026년 3월 2일 (월) 오전 10:12, {SUPPORT}님이 작성:"),
    ("apple-nl", f"Op 2 mrt 2026 om 10:12 heeft {SUPPORT} het volgende geschreven:"),
    ("mailru", f"Понедельник, 2 марта 2026, 10:12 +03:00 от {SUPPORT}:"),
    ("yandex", '02.03.2026, 10:12, "Support" <support@example.com>:'),
]  # fmt: skip

# (client, HTML around the reply and the quote): the reply, then how the client marks the rest.
HTML_QUOTES: list[tuple[str, str]] = [
    ("hotmail", '<div dir="ltr">{reply}</div><hr style="display:inline-block;width:98%">'
     '<div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Support &lt;support@example.com&gt;<br>'
     "<b>Sent:</b> Monday, March 2, 2026 10:12<br></div><div>{quoted}</div>"),
    ("outlook-2003", '<p class="MsoNormal">{reply}</p><div style="border:none;border-top:solid '
     '#B5C4DF 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>From:</b> Support '
     "<br><b>Sent:</b> Monday<br></p></div><p class=\"MsoNormal\">{quoted}</p>"),
    ("gmail", '<div dir="ltr">{reply}</div><br><div class="gmail_quote"><div class="gmail_attr">'
     "On Mon, 2 Mar 2026 at 10:12, Support &lt;support@example.com&gt; wrote:<br></div>"
     '<blockquote class="gmail_quote">{quoted}</blockquote></div>'),
    ("yandex", "<div>{reply}</div><div> </div><div>02.03.2026, 10:12, \"Support\" "
     "&lt;support@example.com&gt;:</div><blockquote><div>{quoted}</div></blockquote>"),
    ("mailru", "<div>{reply}</div><div>Понедельник, 2 марта 2026, 10:12 +03:00 от Support "
     '&lt;support@example.com&gt;:<br><blockquote style="border-left:1px solid #0857A6;'
     'margin:10px;padding:0 0 0 10px;"><div>{quoted}</div></blockquote></div>'),
    ("outlook-new", "<div>{reply}</div><div id=\"mail-editor-reference-message-container\">"
     "<div><b>From:</b> Support</div><div>{quoted}</div></div>"),
]  # fmt: skip


def _mail(subject: str) -> EmailMessage:
    mail = EmailMessage(policy=SMTP)
    mail["From"] = "Jan Klant <jan@klant.nl>"
    mail["To"] = "support@example.com"
    mail["Subject"] = subject
    return mail


def client_replies() -> list[tuple[str, bytes, str]]:
    """Every case: plain-text replies, HTML-only replies, and both parts where the text
    part's quote header is one no rule knows (the HTML's structure decides)."""
    cases = []
    for client, header in PLAIN_HEADERS:
        mail = _mail("RE: Printer")
        mail.set_content(f"{REPLY}\n\n{header}\n\n> {QUOTED}\n")
        cases.append((f"plain:{client}", mail.as_bytes(), REPLY))
    for client, html in HTML_QUOTES:
        mail = _mail("RE: Printer")
        mail.set_content(html.format(reply=REPLY, quoted=QUOTED), subtype="html")
        cases.append((f"html:{client}", mail.as_bytes(), REPLY))
    mail = _mail("SV: Printer")
    mail.set_content(f"{REPLY}\n\n-----Oprindelig meddelelse-----\n\n{QUOTED}\n")
    mail.add_alternative(HTML_QUOTES[0][1].format(reply=REPLY, quoted=QUOTED), subtype="html")
    cases.append(("both:unknown-header", mail.as_bytes(), REPLY))
    return cases
