//! Byte-level tests of RFC 7606 handling: one per rule, plus garbage that must not panic.

use super::*;

const EBGP4: RxContext = RxContext {
    four_octet_as: true,
    ibgp: false,
    ipv4_unicast: true,
    ipv6_unicast: true,
};

fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![flags, code, value.len() as u8];
    out.extend_from_slice(value);
    out
}

fn origin() -> Vec<u8> {
    attr(0x40, 1, &[0])
}

fn as_path() -> Vec<u8> {
    // AS_SEQUENCE of 65001, 65002 (4-octet).
    attr(0x40, 2, &[2, 2, 0, 0, 0xfd, 0xe9, 0, 0, 0xfd, 0xea])
}

fn next_hop() -> Vec<u8> {
    attr(0x40, 3, &[192, 0, 2, 1])
}

fn update(withdrawn: &[u8], attrs: &[Vec<u8>], nlri: &[u8]) -> Vec<u8> {
    let block: Vec<u8> = attrs.concat();
    let mut out = Vec::new();
    out.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    out.extend_from_slice(withdrawn);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(&block);
    out.extend_from_slice(nlri);
    out
}

/// 198.51.100.0/24 and 203.0.113.0/24.
const TWO_PREFIXES: [u8; 8] = [24, 198, 51, 100, 24, 203, 0, 113];

fn valid_attrs() -> Vec<Vec<u8>> {
    vec![
        origin(),
        as_path(),
        next_hop(),
        attr(0x80, 4, &[0, 0, 0, 50]),
        attr(0xc0, 8, &[0xfd, 0xe8, 0, 100]),
        attr(0xc0, 32, &[0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0, 2]),
    ]
}

fn expect_routes(
    outcome: UpdateOutcome,
) -> (Vec<Prefix>, Vec<Prefix>, ParsedAttrs, Vec<AttrError>) {
    match outcome {
        UpdateOutcome::Routes {
            announced,
            withdrawn,
            attrs,
            discarded,
        } => (announced, withdrawn, attrs, discarded),
        other => panic!("expected routes, got {other:?}"),
    }
}

fn expect_withdraw(outcome: UpdateOutcome) -> Vec<Prefix> {
    match outcome {
        UpdateOutcome::TreatAsWithdraw { withdrawn, .. } => withdrawn,
        other => panic!("expected treat-as-withdraw, got {other:?}"),
    }
}

fn expect_reset(outcome: UpdateOutcome) -> u8 {
    match outcome {
        UpdateOutcome::SessionReset { subcode, .. } => subcode,
        other => panic!("expected session reset, got {other:?}"),
    }
}

#[test]
fn valid_ipv4_update_yields_routes_and_attributes() {
    let (announced, withdrawn, attrs, discarded) = expect_routes(parse_update(
        &update(&[], &valid_attrs(), &TWO_PREFIXES),
        &EBGP4,
    ));
    assert_eq!(announced.len(), 2);
    assert_eq!(announced[0].to_string(), "198.51.100.0/24");
    assert!(withdrawn.is_empty() && discarded.is_empty());
    assert_eq!(attrs.origin, Some(0));
    assert_eq!(
        attrs.as_path,
        vec![AsSegment {
            kind: 2,
            asns: vec![65001, 65002]
        }]
    );
    assert_eq!(attrs.next_hop, Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(attrs.med, Some(50));
    assert_eq!(attrs.communities, vec![(65000 << 16) | 100]);
    assert_eq!(attrs.large_communities, vec![[65000, 1, 2]]);
}

#[test]
fn valid_ipv6_mp_reach_yields_routes() {
    let mut mp = vec![0, 2, 1, 16];
    mp.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    mp.push(0);
    mp.extend_from_slice(&[48, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
    let (announced, ..) = expect_routes(parse_update(
        &update(&[], &[origin(), as_path(), attr(0x80, 14, &mp)], &[]),
        &EBGP4,
    ));
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].to_string(), "2001:db8:100::/48");
}

#[test]
fn withdraw_only_and_end_of_rib_need_no_attributes() {
    let (announced, withdrawn, ..) =
        expect_routes(parse_update(&update(&TWO_PREFIXES, &[], &[]), &EBGP4));
    assert!(announced.is_empty());
    assert_eq!(withdrawn.len(), 2);
    let (a, w, ..) = expect_routes(parse_update(&[0, 0, 0, 0], &EBGP4));
    assert!(a.is_empty() && w.is_empty());
    let (a, w, ..) = expect_routes(parse_update(
        &update(&[], &[attr(0x80, 15, &[0, 2, 1])], &[]),
        &EBGP4,
    ));
    assert!(a.is_empty() && w.is_empty());
}

#[test]
fn bad_origin_value_is_treated_as_withdraw() {
    let mut attrs = valid_attrs();
    attrs[0] = attr(0x40, 1, &[7]);
    let withdrawn = expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    assert_eq!(withdrawn.len(), 2, "the announced prefixes are withdrawn");
}

#[test]
fn wrong_flags_on_a_well_known_attribute_are_treated_as_withdraw() {
    let mut attrs = valid_attrs();
    attrs[0] = attr(0xc0, 1, &[0]);
    expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
}

#[test]
fn malformed_as_path_is_treated_as_withdraw() {
    let mut attrs = valid_attrs();
    // Segment claims 3 ASNs, carries 2.
    attrs[1] = attr(0x40, 2, &[2, 3, 0, 0, 0xfd, 0xe9, 0, 0, 0xfd, 0xea]);
    expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    // Zero-length segment.
    attrs[1] = attr(0x40, 2, &[2, 0]);
    expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
}

#[test]
fn bad_next_hop_is_treated_as_withdraw() {
    let mut attrs = valid_attrs();
    attrs[2] = attr(0x40, 3, &[0, 0, 0, 0]);
    expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    attrs[2] = attr(0x40, 3, &[192, 0, 2]);
    expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
}

#[test]
fn malformed_med_and_communities_are_treated_as_withdraw() {
    let mut attrs = valid_attrs();
    attrs[3] = attr(0x80, 4, &[0, 0, 50]);
    expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    let mut attrs = valid_attrs();
    attrs[4] = attr(0xc0, 8, &[0xfd, 0xe8, 0]);
    expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    let mut attrs = valid_attrs();
    attrs[5] = attr(0xc0, 32, &[0; 11]);
    expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
}

#[test]
fn missing_mandatory_attribute_is_treated_as_withdraw() {
    let attrs = vec![origin(), next_hop()];
    expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    let ibgp = RxContext {
        ibgp: true,
        ..EBGP4
    };
    expect_withdraw(parse_update(
        &update(&[], &valid_attrs(), &TWO_PREFIXES),
        &ibgp,
    ));
}

#[test]
fn malformed_atomic_aggregate_and_aggregator_are_discarded() {
    let mut attrs = valid_attrs();
    attrs.push(attr(0x40, 6, &[1]));
    attrs.push(attr(0xc0, 7, &[0, 0, 1]));
    let (announced, _, _, discarded) =
        expect_routes(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    assert_eq!(announced.len(), 2);
    assert_eq!(
        discarded.iter().map(|d| d.code).collect::<Vec<_>>(),
        vec![6, 7]
    );
}

#[test]
fn local_pref_from_ebgp_is_discarded() {
    let mut attrs = valid_attrs();
    attrs.push(attr(0x40, 5, &[0, 0, 0, 200]));
    let (_, _, parsed, discarded) =
        expect_routes(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    assert_eq!(parsed.local_pref, None);
    assert_eq!(discarded[0].code, 5);
}

#[test]
fn duplicate_attribute_keeps_the_first() {
    let mut attrs = valid_attrs();
    attrs.push(attr(0x80, 4, &[0, 0, 0, 99]));
    let (_, _, parsed, discarded) =
        expect_routes(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    assert_eq!(parsed.med, Some(50));
    assert_eq!(discarded.len(), 1);
}

#[test]
fn duplicate_mp_reach_resets_the_session() {
    let mp = attr(0x80, 15, &[0, 2, 1]);
    assert_eq!(
        expect_reset(parse_update(&update(&[], &[mp.clone(), mp], &[]), &EBGP4)),
        1
    );
}

#[test]
fn attribute_overrunning_the_list_is_treated_as_withdraw() {
    let mut attrs = valid_attrs();
    // The last attribute claims 9 bytes but only 4 follow within the attribute block.
    attrs.push(vec![0xc0, 99, 9, 1, 2, 3, 4]);
    let withdrawn = expect_withdraw(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    assert_eq!(
        withdrawn.len(),
        2,
        "NLRI is still located through the total attribute length"
    );
}

#[test]
fn inconsistent_lengths_reset_the_session() {
    // Withdrawn routes length larger than the message.
    assert_eq!(expect_reset(parse_update(&[0, 50, 24, 10, 0], &EBGP4)), 1);
    // Total path attribute length larger than what remains.
    assert_eq!(
        expect_reset(parse_update(&[0, 0, 0, 40, 0x40, 1, 1, 0], &EBGP4)),
        1
    );
}

#[test]
fn bad_prefix_length_resets_the_session() {
    assert_eq!(
        expect_reset(parse_update(
            &update(&[], &valid_attrs(), &[33, 1, 2, 3, 4, 5]),
            &EBGP4
        )),
        10
    );
    assert_eq!(
        expect_reset(parse_update(&update(&[24, 10], &[], &[]), &EBGP4)),
        10
    );
}

#[test]
fn malformed_mp_reach_resets_the_session() {
    // IPv6 with a 4-byte next hop.
    let mp = attr(0x80, 14, &[0, 2, 1, 4, 1, 2, 3, 4, 0]);
    assert_eq!(
        expect_reset(parse_update(
            &update(&[], &[origin(), as_path(), mp], &[]),
            &EBGP4
        )),
        9
    );
}

#[test]
fn unknown_optional_attribute_is_kept_and_unknown_well_known_resets() {
    let mut attrs = valid_attrs();
    attrs.push(attr(0xc0, 200, &[1, 2, 3]));
    let (_, _, parsed, _) =
        expect_routes(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4));
    assert_eq!(parsed.other.last().map(|a| a.code), Some(200));
    let mut attrs = valid_attrs();
    attrs.push(attr(0x40, 201, &[1]));
    assert_eq!(
        expect_reset(parse_update(&update(&[], &attrs, &TWO_PREFIXES), &EBGP4)),
        2
    );
}

#[test]
fn prefixes_are_normalised_so_equal_routes_compare_equal() {
    let a = parse_prefixes(&[23, 10, 0, 1], Afi::Ipv4).unwrap();
    let b = parse_prefixes(&[23, 10, 0, 0], Afi::Ipv4).unwrap();
    assert_eq!(a, b);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid = update(&[24, 10, 0, 0], &valid_attrs(), &TWO_PREFIXES);
    for _ in 0..20_000 {
        let len = (next() % 80) as usize;
        let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = parse_update(&random, &EBGP4);
        let mut mutated = valid.clone();
        let i = (next() as usize) % mutated.len();
        mutated[i] = next() as u8;
        let cut = (next() as usize) % (mutated.len() + 1);
        let _ = parse_update(&mutated[..cut], &EBGP4);
        let _ = parse_update(
            &mutated,
            &RxContext {
                four_octet_as: false,
                ibgp: true,
                ..EBGP4
            },
        );
    }
}

fn v6_mp_reach(flags: u8) -> Vec<u8> {
    let mut mp = vec![
        0, 2, 1, 16, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
    ];
    mp.extend_from_slice(&[48, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
    attr(flags, 14, &mp)
}

#[test]
fn mp_reach_with_wrong_flags_is_treated_as_withdraw() {
    let withdrawn = expect_withdraw(parse_update(
        &update(&[], &[origin(), as_path(), v6_mp_reach(0xc0)], &[]),
        &EBGP4,
    ));
    assert_eq!(withdrawn.len(), 1, "its prefixes were found and withdrawn");
}

#[test]
fn bad_next_hop_without_classic_nlri_is_discarded() {
    let attrs = vec![
        origin(),
        as_path(),
        attr(0x40, 3, &[0, 0, 0, 0]),
        v6_mp_reach(0x80),
    ];
    let (announced, _, _, discarded) =
        expect_routes(parse_update(&update(&[], &attrs, &[]), &EBGP4));
    assert_eq!(announced.len(), 1);
    assert_eq!(discarded[0].code, 3);
}
