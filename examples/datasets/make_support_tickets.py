"""Writes support-tickets.jsonl: the demo dataset (original, generated, deterministic).

Each row is a customer message (prompt) and the reply a support bot must give (completion):
one line of JSON with a category, a priority and a short reply. A general chat model answers
such messages in free prose; after fine-tuning it should answer in this exact format, which
makes the fine-tune's effect measurable as format compliance (see support-tickets.schema.json).

    python examples/datasets/make_support_tickets.py   # rewrites support-tickets.jsonl
"""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
PRODUCTS = ["Aurora desk lamp", "Nimbus headphones", "Pico coffee grinder", "Terra backpack", "Vela smart plug",
            "Orbit keyboard", "Lumen e-reader", "Kestrel running shoes"]
NAMES = ["Ana", "Ben", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ines", "Jonas", "Kemal", "Lena"]
TEMPLATES = {
    "billing": [
        ("I was charged twice for my {product} order #{order}. Can you refund one of the payments?", "high",
         "Sorry about the double charge on order #{order}. We have refunded the duplicate payment; it reaches your account in 3-5 business days."),
        ("My invoice for order #{order} shows {amount} EUR but the checkout said less. Why?", "normal",
         "Thanks for flagging invoice #{order}. We are checking the price difference and will send a corrected invoice within 24 hours."),
        ("How do I get a VAT invoice for the {product} I bought?", "low",
         "You can download a VAT invoice under Account > Orders > #{order}. Reply here if any company details need changing."),
        ("Your site took {amount} EUR from my card but I never got an order confirmation.", "high",
         "We found the {amount} EUR payment without an order. It has been refunded and should appear within 3-5 business days."),
    ],
    "shipping": [
        ("Where is my {product}? Order #{order} was supposed to arrive {day}.", "normal",
         "Order #{order} left our warehouse and is with the carrier. The new delivery estimate is within 2 business days."),
        ("The tracking for order #{order} has not moved in a week.", "high",
         "We opened an investigation with the carrier for order #{order}. If it does not move in 48 hours we will ship a replacement."),
        ("Can I change the delivery address for order #{order}? I moved.", "normal",
         "We updated the address on order #{order}, as it has not shipped yet. You will get a new confirmation email."),
        ("My {product} arrived with a crushed box and a scratch on it.", "normal",
         "Sorry your {product} arrived damaged. We are sending a replacement for order #{order}; keep the damaged one until it arrives."),
    ],
    "bug": [
        ("The app crashes every time I open the settings page for my {product}.", "high",
         "Thanks for the report. A fix for the settings crash is in the next app update; meanwhile, reinstalling the app avoids it."),
        ("My {product} does not pair over Bluetooth anymore after the last update.", "high",
         "We reproduced the pairing problem after the update. Please reset the {product} by holding the power button for 10 seconds, then pair again."),
        ("The firmware update for my {product} stops at 80 percent.", "normal",
         "Please keep the {product} plugged in and retry the update over Wi-Fi. If it stops again, send us the error code shown in the app."),
        ("The battery level shown for my {product} jumps around randomly.", "low",
         "This is a display bug in the app, not the battery. It is fixed in the next release; the {product} itself is fine."),
    ],
    "account": [
        ("I forgot my password and the reset email never arrives.", "normal",
         "We resent the password reset link to your email. Check the spam folder; the link is valid for one hour."),
        ("Please delete my account and all my data.", "normal",
         "We have started deleting your account and data. You will get a confirmation email when it is complete, within 30 days."),
        ("Someone logged into my account from another country!", "high",
         "We signed out all sessions and locked your account. Reset your password with the link we emailed and turn on two-factor login."),
        ("How do I change the email address on my account? My name is {name}.", "low",
         "Hi {name}, go to Account > Profile > Email, enter the new address and confirm the link we send to it."),
    ],
    "other": [
        ("Do you have the {product} in other colours?", "low",
         "The {product} currently comes in black and white. Subscribe to the product page to hear about new colours."),
        ("Is the {product} compatible with 110 V outlets?", "low",
         "Yes, the {product} works from 100 to 240 V; you only need a plug adapter for your outlet type."),
        ("Can I buy a gift card for my friend {name}?", "low",
         "Yes, gift cards from 20 to 200 EUR are available on our Gift page, delivered by email to {name} on the date you choose."),
        ("Do you ship the {product} to Norway?", "low",
         "Yes, we ship to Norway. Delivery takes 4-7 business days and import fees are included at checkout."),
    ],
}
DAYS = ["yesterday", "on Monday", "last Friday", "two days ago"]


def rows(seed: int = 7, per_template: int = 6) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for category, templates in TEMPLATES.items():
        for prompt, priority, reply in templates:
            for _ in range(per_template):
                slots = {"product": rng.choice(PRODUCTS), "order": rng.randint(10000, 99999),
                         "amount": rng.choice([19, 29, 49, 79, 129, 249]), "name": rng.choice(NAMES),
                         "day": rng.choice(DAYS)}
                answer = {"category": category, "priority": priority, "reply": reply.format(**slots)}
                row = {"prompt": prompt.format(**slots), "completion": json.dumps(answer)}
                if row not in out:  # templates without slots would repeat themselves
                    out.append(row)
    rng.shuffle(out)
    return out


if __name__ == "__main__":
    data = rows()
    with open(HERE / "support-tickets.jsonl", "w") as f:
        for row in data:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(data)} rows to {HERE / 'support-tickets.jsonl'}")
