#!/usr/bin/env python3
"""Generates a large, valid inventory for the inventory-scale measurement of the load test.

    scripts/gen-inventory.py [--campaigns 100000] [--profile realistic|lean] [--seed 17]
                             [--now ISO] OUT.json

Both profiles look like a big regional publisher's: a dozen sections with three slots each
(`une-1` … `meteo-3`; position 1 is responsive, 728x90 or 320x50), one advertiser per 20
campaigns, most campaigns sold in the busy sections, weights from 1 to 100, and one house
campaign every slot falls back to.

- `realistic` (default): campaigns in one to a few slots; a few sponsorships, some paused and
  some out of their flight (ended or not started yet); lifetime and daily caps (part of them
  paced evenly), frequency caps, keywords to require or avoid, countries, day-parting and
  exclusion labels on a share of them; one or two creatives each, text ads and images of the
  slots' sizes. About 340 bytes a campaign: 100 000 of them make 34 MB, within the 64 MiB that
  `PUT /v1/admin/inventory` accepts.
- `lean`: the smallest campaigns a document can hold (100 000 in 16.6 MB): one
  slot, one short text creative, a weight (left out when 1), 50 campaigns per advertiser;
  a flight, a cap or a keyword on one campaign in a hundred each. About 165 bytes a campaign
  (16.6 MB for 100 000).

The document is written without spaces. Flights are placed around --now (the current time by
default), so that the proportions above hold when it is served right after it is generated.
The same arguments give the same document. The script prints what it wrote as one JSON line
(`campaigns`, `slots`, `advertisers`, `bytes`). Validate the result with `regie check OUT.json`.
"""

import argparse
import datetime as dt
import json
import random

SECTIONS = [
    "une", "actu", "politique", "economie", "sport", "culture",
    "region", "faits-divers", "loisirs", "immobilier", "emploi", "meteo",
]
# A campaign's sections are drawn with these weights: the front page and the news sections
# carry most of the traffic, so most campaigns are sold there.
SECTION_WEIGHTS = [30, 20, 10, 8, 10, 6, 8, 4, 4, 3, 3, 2]
# Positions on a page, by number, and the slot's size(s): the top one is responsive.
POSITIONS = {1: {"sizes": ["728x90", "320x50"]}, 2: {"size": "300x250"}, 3: {"size": "300x600"}}
KEYWORDS = [
    "auto", "banque", "bateau", "bio", "brocante", "cinema", "concert", "cuisine", "deuil",
    "ecole", "elections", "emploi", "energie", "festival", "football", "jardin", "logement",
    "marche", "mer", "montagne", "musique", "peche", "randonnee", "rugby", "sante", "ski",
    "surf", "tennis", "theatre", "travaux", "velo", "vin", "voile", "voyage",
]
LABELS = ["auto", "banque", "assurance", "telecom", "grande-distribution", "immobilier"]
COUNTRIES = [["FR"], ["FR", "BE"], ["FR", "BE", "CH"], ["FR", "MC"]]
HOUSE_ID = "house"
HOUSE_ADVERTISER = "gazette"
DAY = dt.timedelta(days=1)


def slot_names():
    return [f"{section}-{position}" for section in SECTIONS for position in POSITIONS]


def slots():
    return [
        {"name": f"{section}-{position}", **size, "fallback": HOUSE_ID}
        for section in SECTIONS
        for position, size in POSITIONS.items()
    ]


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def flight(rng, now):
    """Start and end, or neither: 30 % open, 55 % in flight, 8 % ended, 7 % not started."""
    roll = rng.random()
    if roll < 0.30:
        return {}
    if roll < 0.85:
        return {"start": iso(now - rng.randint(1, 60) * DAY),
                "end": iso(now + rng.randint(1, 90) * DAY)}
    if roll < 0.93:
        end = now - rng.randint(1, 30) * DAY
        return {"start": iso(end - rng.randint(7, 60) * DAY), "end": iso(end)}
    start = now + rng.randint(1, 30) * DAY
    return {"start": iso(start), "end": iso(start + rng.randint(7, 60) * DAY)}


def image_size(rng, slot):
    position = int(slot.rsplit("-", 1)[1])
    return POSITIONS[position].get("size") or rng.choice(POSITIONS[position]["sizes"])


def creatives(rng, i, advertiser, campaign_slots):
    """One or two creatives: a text ad, or an image of one of the campaign's slot sizes."""
    landing = f"https://{advertiser}.example/{i}"
    made = []
    for k in range(1 if rng.random() < 0.7 else 2):
        if rng.random() < 0.5:
            made.append({"id": f"t{k}", "format": "text", "title": f"Offre {i}",
                         "landing_url": landing})
        else:
            size = image_size(rng, rng.choice(campaign_slots))
            width, height = (int(p) for p in size.split("x"))
            made.append({"id": f"i{k}", "format": "image",
                         "image_url": f"https://cdn.example/{advertiser}/{size}.png",
                         "width": width, "height": height, "landing_url": landing})
    return made


def base36(n):
    """Short identifiers: c0 … c255r for 100 000 campaigns."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        n, d = divmod(n, 36)
        text = digits[d] + text
        if n == 0:
            return text


def weight(rng):
    """1 to 100, most campaigns near 10: a few big buyers, many small ones."""
    return max(1, min(100, int(rng.lognormvariate(2.3, 1.0))))


def section(rng):
    return rng.choices(SECTIONS, SECTION_WEIGHTS)[0]


def realistic_campaign(rng, i, now, advertiser):
    sections = {section(rng) for _ in range(rng.choice([1, 1, 2]))}
    campaign_slots = sorted(
        f"{s}-{position}"
        for s in sections
        for position in rng.sample(sorted(POSITIONS), rng.choice([1, 1, 2, 3]))
    )
    c = {"id": f"c{base36(i)}", "advertiser_id": advertiser, "slots": campaign_slots,
         "weight": weight(rng)}
    if rng.random() < 0.05:
        c["status"] = "paused"
    if rng.random() < 0.02:
        c["priority"] = "sponsorship"
    c.update(flight(rng, now))
    caps = {}
    if rng.random() < 0.25:
        caps["total_impressions"] = rng.randint(10, 1000) * 1000
    if rng.random() < 0.15:
        caps["daily_impressions"] = rng.randint(1, 100) * 1000
    if caps:
        c["caps"] = caps
        if rng.random() < 0.4:
            c["pacing"] = "even"
    if rng.random() < 0.15:
        c["frequency"] = {"max": rng.randint(1, 5), "per_seconds": rng.choice([3600, 86400])}
    targeting = {}
    if rng.random() < 0.10:
        targeting["keywords_any"] = rng.sample(KEYWORDS, rng.randint(1, 3))
    if rng.random() < 0.15:
        targeting["keywords_none"] = ["deuil"]
    if rng.random() < 0.05:
        targeting["countries"] = rng.choice(COUNTRIES)
    if rng.random() < 0.03:
        targeting["schedule"] = [{"from": "07:00", "to": "22:00"}]
    if targeting:
        c["targeting"] = targeting
    if rng.random() < 0.05:
        c["exclusion_labels"] = [rng.choice(LABELS)]
    c["creatives"] = creatives(rng, i, advertiser, campaign_slots)
    return c


def lean_campaign(rng, i, now, advertiser):
    c = {"id": f"c{base36(i)}", "advertiser_id": advertiser,
         "slots": [f"{section(rng)}-{rng.choice(sorted(POSITIONS))}"]}
    # 1 is the default weight: left out, as an editor would.
    if (w := weight(rng)) > 1:
        c["weight"] = w
    roll = rng.random()
    if roll < 0.01:
        c.update(flight(rng, now))
    elif roll < 0.02:
        c["caps"] = {"total_impressions": rng.randint(10, 1000) * 1000}
    elif roll < 0.03:
        c["targeting"] = {"keywords_none": ["deuil"]}
    c["creatives"] = [{"id": "t", "format": "text", "title": "Offre",
                       "landing_url": f"https://{advertiser}.example"}]
    return c


PROFILES = {"realistic": realistic_campaign, "lean": lean_campaign}


def house_campaign(all_slots):
    return {
        "id": HOUSE_ID,
        "advertiser_id": HOUSE_ADVERTISER,
        "slots": all_slots,
        "priority": "house",
        "creatives": [{"id": "annonceurs", "format": "text",
                       "title": "Annoncez dans La Gazette",
                       "landing_url": "https://gazette.example/annonceurs"}],
    }


def inventory(campaigns, profile, seed, now):
    """The document: the house campaign and campaigns - 1 of the profile."""
    rng = random.Random(seed)
    make = PROFILES[profile]
    # Advertisers are listed once each: the lean profile has fewer, bigger ones to save bytes.
    per_advertiser = 50 if profile == "lean" else 20
    advertisers = [f"a{j}" for j in range(max(1, campaigns // per_advertiser))]
    return {
        "slots": slots(),
        "advertisers": [{"id": HOUSE_ADVERTISER, "name": "La Gazette (régie)"}]
        + [{"id": a, "name": a} for a in advertisers],
        "campaigns": [house_campaign(slot_names())]
        + [make(rng, i, now, advertisers[i // per_advertiser % len(advertisers)]) for i in range(campaigns - 1)],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="where to write the inventory (JSON)")
    parser.add_argument("--campaigns", type=int, default=100_000,
                        help="campaigns, the house campaign included (default 100000)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="realistic")
    parser.add_argument("--seed", type=int, default=17, help="random seed (default 17)")
    parser.add_argument("--now", help="ISO 8601 time the flights are placed around (default: now)")
    args = parser.parse_args()
    if args.campaigns < 1:
        parser.error("--campaigns must be at least 1")
    now = (dt.datetime.fromisoformat(args.now.replace("Z", "+00:00")) if args.now
           else dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    doc = inventory(args.campaigns, args.profile, args.seed, now)
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    with open(args.out, "wb") as f:
        f.write(text)
    print(json.dumps({"campaigns": len(doc["campaigns"]), "slots": len(doc["slots"]),
                      "advertisers": len(doc["advertisers"]), "bytes": len(text)}))


if __name__ == "__main__":
    main()
