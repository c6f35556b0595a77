use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::remoting::command::{LanguageCode, SerializeType, FLAG_ONEWAY};
use crate::remoting::{RemotingCommand, RemotingError, FRAME_MAX_LENGTH_BYTES};

/// Encodes and decodes through the frame splitter, as a connection does.
fn round_trip(cmd: &RemotingCommand) -> RemotingCommand {
    let frame = encode(cmd).expect("encode");
    let mut buf = BytesMut::from(&frame[..]);
    let split = try_split_frame(&mut buf)
        .expect("split")
        .expect("complete frame");
    assert!(buf.is_empty(), "frame fully consumed");
    decode(split).expect("decode")
}

fn language() -> impl Strategy<Value = LanguageCode> {
    (0usize..LanguageCode::ALL.len()).prop_map(|i| LanguageCode::ALL[i])
}

fn command(
    code: impl Strategy<Value = i32>,
    version: impl Strategy<Value = i32>,
) -> impl Strategy<Value = RemotingCommand> {
    (
        code,
        language(),
        version,
        any::<i32>(),
        any::<i32>(),
        proptest::option::of(any::<String>()),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..6),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(code, language, version, opaque, flag, remark, ext_fields, body)| RemotingCommand {
                code,
                language,
                version,
                opaque,
                flag,
                remark,
                ext_fields: ext_fields.into(),
                body: Bytes::from(body),
                serialize_type: SerializeType::Json,
            },
        )
}

proptest! {
    #[test]
    fn json_round_trip(cmd in command(any::<i32>(), any::<i32>())) {
        let decoded = round_trip(&cmd);
        prop_assert_eq!(decoded, cmd);
    }

    #[test]
    fn rocketmq_round_trip(cmd in command(any::<i16>().prop_map(i32::from), any::<i16>().prop_map(i32::from))) {
        let mut cmd = cmd;
        cmd.serialize_type = SerializeType::RocketMq;
        let frame = encode(&cmd).unwrap();
        prop_assert_eq!(frame[4], 1u8, "ROCKETMQ type byte");
        let decoded = round_trip(&cmd);
        // The binary header cannot tell an empty remark from none: both decode as None.
        if cmd.remark.as_deref() == Some("") {
            cmd.remark = None;
        }
        prop_assert_eq!(decoded, cmd);
    }

    /// Codes beyond i16 (5.x POP codes) cannot be carried by the binary header: JSON is used.
    #[test]
    fn rocketmq_falls_back_to_json_for_wide_codes(cmd in command(32768i32..300_000, any::<i16>().prop_map(i32::from))) {
        let mut cmd = cmd;
        cmd.serialize_type = SerializeType::RocketMq;
        let frame = encode(&cmd).unwrap();
        prop_assert_eq!(frame[4], 0u8, "JSON type byte");
        let decoded = round_trip(&cmd);
        prop_assert_eq!(decoded.serialize_type, SerializeType::Json);
        prop_assert_eq!(decoded.code, cmd.code);
        prop_assert_eq!(decoded.ext_fields, cmd.ext_fields);
    }

    #[test]
    fn decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(Bytes::from(bytes.clone()));
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = try_split_frame(&mut buf) {
            let _ = decode(frame);
        }
    }

    /// Header-type byte set to JSON or ROCKETMQ with random header bytes: exercises both
    /// header parsers on garbage rather than stopping at the type byte.
    #[test]
    fn decode_arbitrary_headers_never_panics(
        serialize_type in 0u8..2,
        header in proptest::collection::vec(any::<u8>(), 0..120),
        body_len in 0usize..10,
    ) {
        let mut frame = BytesMut::new();
        frame.put_u8(serialize_type);
        frame.put_uint(header.len() as u64, 3);
        frame.put_slice(&header);
        frame.put_bytes(0, body_len);
        let _ = decode(frame.freeze());
    }

    /// Single-byte corruptions of valid frames decode to something or fail cleanly.
    #[test]
    fn corrupted_frames_never_panic(
        cmd in command(any::<i16>().prop_map(i32::from), any::<i16>().prop_map(i32::from)),
        rocketmq in any::<bool>(),
        position in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let mut cmd = cmd;
        if rocketmq {
            cmd.serialize_type = SerializeType::RocketMq;
        }
        let mut frame = encode(&cmd).unwrap().to_vec();
        let i = position.index(frame.len());
        frame[i] = value;
        let mut buf = BytesMut::from(&frame[..]);
        if let Ok(Some(split)) = try_split_frame(&mut buf) {
            let _ = decode(split);
        }
    }
}

#[test]
fn golden_rocketmq_frame() {
    let cmd = RemotingCommand {
        code: 10,
        language: LanguageCode::Java,
        version: 409,
        opaque: 7,
        flag: 0,
        remark: Some("hi".to_string()),
        ext_fields: ExtFields::from([("a".to_string(), "b".to_string())]),
        body: Bytes::from_static(b"xyz"),
        serialize_type: SerializeType::RocketMq,
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x00, 0x00, 0x00, 0x26,             // length 38 = 4 + 31 + 3
        0x01, 0x00, 0x00, 0x1F,             // ROCKETMQ, header length 31
        0x00, 0x0A,                         // code 10
        0x00,                               // language JAVA
        0x01, 0x99,                         // version 409
        0x00, 0x00, 0x00, 0x07,             // opaque
        0x00, 0x00, 0x00, 0x00,             // flag
        0x00, 0x00, 0x00, 0x02, b'h', b'i', // remark
        0x00, 0x00, 0x00, 0x08,             // ext fields block length
        0x00, 0x01, b'a', 0x00, 0x00, 0x00, 0x01, b'b',
        b'x', b'y', b'z',                   // body
    ];
    assert_eq!(&encode(&cmd).unwrap()[..], expected);
    assert_eq!(decode(Bytes::from_static(&expected[4..])).unwrap(), cmd);
}

#[test]
fn golden_json_frame() {
    let cmd = RemotingCommand {
        code: 10,
        language: LanguageCode::Java,
        version: 409,
        opaque: 7,
        flag: FLAG_ONEWAY,
        remark: None,
        ext_fields: ExtFields::from([
            ("topic".to_string(), "T\"1".to_string()),
            ("queueId".to_string(), "1".to_string()),
        ]),
        body: Bytes::from_static(b"xy"),
        serialize_type: SerializeType::Json,
    };
    let header = br#"{"code":10,"extFields":{"queueId":"1","topic":"T\"1"},"flag":2,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":409}"#;
    let mut expected = Vec::new();
    expected.extend_from_slice(&((4 + header.len() + 2) as u32).to_be_bytes());
    expected.extend_from_slice(&(header.len() as u32).to_be_bytes());
    expected.extend_from_slice(header);
    expected.extend_from_slice(b"xy");
    let frame = encode(&cmd).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&frame[8..frame.len() - 2]),
        String::from_utf8_lossy(header)
    );
    assert_eq!(&frame[..], &expected[..]);
    assert_eq!(decode(Bytes::from(expected[4..].to_vec())).unwrap(), cmd);
}

#[test]
fn json_remark_and_empty_ext_are_written_like_fastjson() {
    let cmd = RemotingCommand {
        code: 1,
        language: LanguageCode::Rust,
        remark: Some("no route \u{e9}\n".to_string()),
        ..Default::default()
    };
    let frame = encode(&cmd).unwrap();
    assert_eq!(
        std::str::from_utf8(&frame[8..]).unwrap(),
        "{\"code\":1,\"flag\":0,\"language\":\"RUST\",\"opaque\":0,\"remark\":\"no route \u{e9}\\n\",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":0}"
    );
}

fn json_frame(header: &str, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_u32(header.len() as u32);
    frame.put_slice(header.as_bytes());
    frame.put_slice(body);
    frame.freeze()
}

#[test]
fn json_decoding_is_lenient_like_fastjson() {
    // Go client style: empty remark, null extFields, language name.
    let cmd = decode(json_frame(
        r#"{"code":105,"language":"GO","version":317,"opaque":1,"flag":0,"remark":"","extFields":null}"#,
        b"",
    ))
    .unwrap();
    assert_eq!(cmd.code, 105);
    assert_eq!(cmd.language, LanguageCode::Go);
    assert_eq!(cmd.version, 317);
    assert_eq!(cmd.opaque, 1);
    assert_eq!(cmd.remark.as_deref(), Some(""));
    assert!(cmd.ext_fields.is_empty());

    // Numbers as strings, lower-case language, unknown keys, non-string ext values.
    let cmd = decode(json_frame(
        r#"{"code":"34","language":"java","opaque":" 12 ","flag":"2","version":"409","unknown":{"x":[1,2]},"serializeTypeCurrentRPC":"JSON","extFields":{"a":1,"b":true,"c":"s","d":null}}"#,
        b"body",
    ))
    .unwrap();
    assert_eq!(cmd.code, 34);
    assert_eq!(cmd.language, LanguageCode::Java);
    assert_eq!(cmd.opaque, 12);
    assert!(cmd.is_oneway());
    assert_eq!(cmd.version, 409);
    assert_eq!(cmd.ext("a"), Some("1"));
    assert_eq!(cmd.ext("b"), Some("true"));
    assert_eq!(cmd.ext("c"), Some("s"));
    assert_eq!(cmd.ext("d"), None);
    assert_eq!(&cmd.body[..], b"body");
    assert_eq!(cmd.remark, None);

    // Language as ordinal; missing fields default; unknown language names read as OTHER.
    let cmd = decode(json_frame(r#"{"code":1,"language":12}"#, b"")).unwrap();
    assert_eq!(cmd.language, LanguageCode::Rust);
    let cmd = decode(json_frame(r#"{"language":"NODE_JS"}"#, b"")).unwrap();
    assert_eq!(cmd.language, LanguageCode::NodeJs);
    assert_eq!(cmd.code, 0);
    let cmd = decode(json_frame(r#"{"language":"COBOL"}"#, b"")).unwrap();
    assert_eq!(cmd.language, LanguageCode::Other);
}

#[test]
fn json_decoding_rejects_garbage_with_a_reason() {
    for header in [
        "",
        "[1,2]",
        "{\"code\":",
        "{\"code\":\"ten\"}",
        "{\"code\":99999999999}",
        "{\"extFields\":[1]}",
        "{} trailing",
    ] {
        match decode(json_frame(header, b"")) {
            Err(RemotingError::Malformed(reason)) => assert!(reason.contains("JSON"), "{reason}"),
            other => panic!("{header:?} decoded as {other:?}"),
        }
    }
}

#[test]
fn decode_rejects_bad_frames() {
    // Shorter than the header length int.
    assert!(matches!(
        decode(Bytes::from_static(&[0, 0])),
        Err(RemotingError::Malformed(_))
    ));
    // Header length beyond the frame.
    assert!(matches!(
        decode(Bytes::from_static(&[0, 0, 0, 9, b'{', b'}'])),
        Err(RemotingError::Malformed(_))
    ));
    // Unknown serialize type.
    assert!(matches!(
        decode(Bytes::from_static(&[7, 0, 0, 2, b'{', b'}'])),
        Err(RemotingError::Malformed(_))
    ));
    // ROCKETMQ header truncated inside the fixed part.
    assert!(matches!(
        decode(Bytes::from_static(&[1, 0, 0, 3, 0, 10, 0])),
        Err(RemotingError::Malformed(_))
    ));
}

fn rocketmq_header(remark_len: i32, remark: &[u8], ext_len: i32, ext: &[u8]) -> Bytes {
    let mut header = BytesMut::new();
    header.put_i16(10);
    header.put_u8(99); // unknown language ordinal
    header.put_i16(1);
    header.put_i32(5);
    header.put_i32(0);
    header.put_i32(remark_len);
    header.put_slice(remark);
    header.put_i32(ext_len);
    header.put_slice(ext);
    let mut frame = BytesMut::new();
    frame.put_u8(1);
    frame.put_uint(header.len() as u64, 3);
    frame.put_slice(&header);
    frame.freeze()
}

#[test]
fn rocketmq_header_lengths_are_checked() {
    let ok = decode(rocketmq_header(0, b"", 0, b"")).unwrap();
    assert_eq!(ok.remark, None);
    assert_eq!(ok.language, LanguageCode::Other);
    assert!(matches!(
        decode(rocketmq_header(-1, b"", 0, b"")),
        Err(RemotingError::Malformed(_))
    ));
    assert!(matches!(
        decode(rocketmq_header(5, b"ab", 0, b"")),
        Err(RemotingError::Malformed(_))
    ));
    assert!(matches!(
        decode(rocketmq_header(0, b"", 100, b"")),
        Err(RemotingError::Malformed(_))
    ));
    // Ext block whose entry claims a longer value than the block holds.
    let entry = [0, 1, b'k', 0, 0, 0, 9, b'v'];
    assert!(matches!(
        decode(rocketmq_header(0, b"", 8, &entry)),
        Err(RemotingError::Malformed(_))
    ));
    // Negative key length.
    let entry = [0xFF, 0xFF, b'k', 0, 0, 0, 1, b'v'];
    assert!(matches!(
        decode(rocketmq_header(0, b"", 8, &entry)),
        Err(RemotingError::Malformed(_))
    ));
    // Well-formed entry; invalid UTF-8 is replaced as Java does, not rejected.
    let entry = [0, 1, b'k', 0, 0, 0, 1, 0xFF];
    let cmd = decode(rocketmq_header(0, b"", 8, &entry)).unwrap();
    assert_eq!(cmd.ext("k"), Some("\u{FFFD}"));
}

#[test]
fn split_waits_for_partial_input() {
    let first = encode(&RemotingCommand::request(1).with_body(Bytes::from_static(b"abc"))).unwrap();
    let second = encode(&RemotingCommand::request(2)).unwrap();
    let mut all = first.to_vec();
    all.extend_from_slice(&second);

    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for byte in &all {
        buf.put_u8(*byte);
        if let Some(frame) = try_split_frame(&mut buf).unwrap() {
            frames.push(decode(frame).unwrap());
        }
        if frames.is_empty() {
            // Nothing is yielded before the first frame is complete.
            assert!(buf.len() < first.len());
        }
    }
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].code, 1);
    assert_eq!(&frames[0].body[..], b"abc");
    assert_eq!(frames[1].code, 2);
    assert!(buf.is_empty());

    // Both frames present at once split one after the other.
    let mut buf = BytesMut::from(&all[..]);
    assert_eq!(
        decode(try_split_frame(&mut buf).unwrap().unwrap())
            .unwrap()
            .code,
        1
    );
    assert_eq!(
        decode(try_split_frame(&mut buf).unwrap().unwrap())
            .unwrap()
            .code,
        2
    );
    assert_eq!(try_split_frame(&mut buf).unwrap(), None);
}

#[test]
fn split_rejects_negative_short_and_oversized_lengths() {
    let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
    assert!(matches!(
        try_split_frame(&mut buf),
        Err(RemotingError::Malformed(_))
    ));

    let mut buf = BytesMut::from(&2i32.to_be_bytes()[..]);
    assert!(matches!(
        try_split_frame(&mut buf),
        Err(RemotingError::Malformed(_))
    ));

    // Rejected as soon as the length int arrives, before any body bytes.
    let too_long = (FRAME_MAX_LENGTH_BYTES - 4 + 1) as i32;
    let mut buf = BytesMut::from(&too_long.to_be_bytes()[..]);
    match try_split_frame(&mut buf) {
        Err(RemotingError::FrameTooLarge { length, max }) => {
            assert_eq!(length, FRAME_MAX_LENGTH_BYTES + 1);
            assert_eq!(max, FRAME_MAX_LENGTH_BYTES);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let mut buf = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
    assert!(matches!(
        try_split_frame(&mut buf),
        Err(RemotingError::FrameTooLarge { .. })
    ));

    // The largest legal frame is merely incomplete.
    let largest = (FRAME_MAX_LENGTH_BYTES - 4) as i32;
    let mut buf = BytesMut::from(&largest.to_be_bytes()[..]);
    assert_eq!(try_split_frame(&mut buf).unwrap(), None);
    assert_eq!(
        peek_frame_length(&buf).unwrap(),
        Some(FRAME_MAX_LENGTH_BYTES - 4)
    );
}

#[test]
fn encode_enforces_the_frame_limit() {
    let header_len = encode_header(&RemotingCommand::request(10)).unwrap().len();
    let fits =
        RemotingCommand::request(10).with_body(vec![0u8; FRAME_MAX_LENGTH_BYTES - header_len]);
    let frame = encode(&fits).unwrap();
    assert_eq!(frame.len(), FRAME_MAX_LENGTH_BYTES);
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = decode(try_split_frame(&mut buf).unwrap().unwrap()).unwrap();
    assert_eq!(decoded.body.len(), FRAME_MAX_LENGTH_BYTES - header_len);

    let too_big =
        RemotingCommand::request(10).with_body(vec![0u8; FRAME_MAX_LENGTH_BYTES - header_len + 1]);
    assert!(matches!(
        encode(&too_big),
        Err(RemotingError::FrameTooLarge { .. })
    ));
    assert!(matches!(
        encode_header(&too_big),
        Err(RemotingError::FrameTooLarge { .. })
    ));
}

#[test]
fn decoded_body_shares_the_frame_buffer() {
    let frame = encode(&RemotingCommand::request(3).with_body(vec![9u8; 1000])).unwrap();
    let payload = frame.slice(4..);
    let start = payload.as_ptr() as usize;
    let cmd = decode(payload.clone()).unwrap();
    let body_start = cmd.body.as_ptr() as usize;
    assert!(
        body_start > start && body_start < start + payload.len(),
        "body is a slice of the frame"
    );
}

#[test]
fn error_and_not_supported_responses() {
    use crate::remoting::response_code;
    let mut request = RemotingCommand::request(4242);
    request.opaque = 17;
    let missing = request.required::<i32>("queueId").unwrap_err();
    let response = request.error_response(&missing);
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert_eq!(response.opaque, 17);
    assert!(response.is_response());
    assert_eq!(
        response.remark.as_deref(),
        Some("the custom field <queueId> is null")
    );

    let request = request.with_ext("queueId", "x");
    let invalid = request.required::<i32>("queueId").unwrap_err();
    let remark = request.error_response(&invalid).remark.unwrap();
    assert!(
        remark.contains("<queueId>") && remark.contains("<x>"),
        "{remark}"
    );

    let response = request.not_supported();
    assert_eq!(response.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        response.remark.as_deref(),
        Some(" request type 4242 not supported")
    );
    assert_eq!(response.opaque, 17);
}

#[test]
fn language_names_and_ordinals_agree() {
    for (ordinal, language) in LanguageCode::ALL.iter().enumerate() {
        assert_eq!(*language as usize, ordinal);
        assert_eq!(LanguageCode::from_ordinal(ordinal as i64), *language);
        assert_eq!(LanguageCode::from_name_lenient(language.name()), *language);
        assert_eq!(
            LanguageCode::from_name_lenient(&language.name().to_lowercase()),
            *language
        );
    }
    assert_eq!(LanguageCode::from_ordinal(-1), LanguageCode::Other);
    assert_eq!(LanguageCode::from_ordinal(14), LanguageCode::Other);
}

#[test]
fn json_strings_are_written_exactly_as_serde_json_writes_them() {
    for s in [
        "",
        "plain-Topic_1",
        "quote\"inside",
        "back\\slash",
        "ctl\u{1}\n\t\u{1f}",
        "del\u{7f} ü 中文 😀",
        "UNIQ_KEY\u{1}7F000001\u{2}KEYS\u{1}k",
    ] {
        let mut buf = BytesMut::new();
        write_json_string(&mut buf, s).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf).unwrap(),
            serde_json::to_string(s).unwrap(),
            "{s:?}"
        );
    }
}

proptest! {
    #[test]
    fn json_string_fast_path_matches_serde_json(s in any::<String>()) {
        let mut buf = BytesMut::new();
        write_json_string(&mut buf, &s).unwrap();
        prop_assert_eq!(std::str::from_utf8(&buf).unwrap(), serde_json::to_string(&s).unwrap());
    }
}

/// The fast JSON header decoder either declines (None) or agrees exactly with the serde path.
fn assert_fast_json_agrees(header: &[u8]) {
    if let Some(fast) = fast_json::decode(header) {
        let slow = decode_json_header_serde(header)
            .unwrap_or_else(|e| panic!("fast path accepted what serde rejects ({e}): {header:?}"));
        assert_eq!(fast, slow, "{}", String::from_utf8_lossy(header));
    }
}

#[test]
fn fast_json_header_decode_matches_serde_on_odd_inputs() {
    let java = br#"{"code":310,"extFields":{"a":"group","b":"Topic","e":"3","i":"TAGS\u0001x","n":null},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":409}"#;
    let cmd = fast_json::decode(java).expect("a Java send header takes the fast path");
    assert_eq!(cmd.ext("i"), Some("TAGS\u{1}x"));
    assert_eq!(cmd.ext("n"), None);
    let plain = br#" { "code" : 10 , "extFields" : { "k" : "v" , "n" : null , "k" : "w" } , "flag" : 0 , "language" : "java" , "opaque" : -5 , "remark" : null , "serializeTypeCurrentRPC" : "JSON" , "version" : 409 , "x" : true , "y" : -0 } "#;
    let cmd = fast_json::decode(plain).expect("plain header takes the fast path");
    assert_eq!(cmd.code, 10);
    assert_eq!(cmd.opaque, -5);
    assert_eq!(cmd.language, LanguageCode::Java);
    assert_eq!(cmd.ext("k"), Some("w"));
    assert_eq!(cmd.ext("n"), None);
    for h in [
        &java[..],
        &plain[..],
        br#"{}"#,
        br#"{"code":1}x"#,
        br#"{"code":1,}"#,
        br#"{"code":01}"#,
        br#"{"code":1.0}"#,
        br#"{"code":1e2}"#,
        br#"{"code":"12"}"#,
        br#"{"code":null}"#,
        br#"{"code":2147483648}"#,
        br#"{"code":-2147483648}"#,
        br#"{"code":-}"#,
        br#"{"language":3}"#,
        br#"{"language":"NODE_JS","remark":"r"}"#,
        br#"{"remark":5}"#,
        br#"{"extFields":null,"code":3}"#,
        br#"{"extFields":{"a":"1"},"extFields":{"b":"2"}}"#,
        br#"{"extFields":{"a":1}}"#,
        br#"{"extFields":{"a":"1"}"#,
        br#"{"other":{"nested":[1,2]},"code":4}"#,
        br#"{"other":truex}"#,
        br#"{"other":nul}"#,
        b"{\"remark\":\"tab\tinside\"}",
        b"{\"remark\":\"\xff\"}",
        b"{\"remark\":\"\xc3\xbc \xe4\xb8\xad\"}",
        br#"[1]"#,
        br#"{"remark":"a\"b\\c\/d\b\f\n\r\t\u00fc\ud83d\ude00"}"#,
        br#"{"remark":"lone \ud83d x"}"#,
        br#"{"remark":"lone \ude00"}"#,
        br#"{"remark":"bad \x"}"#,
        br#"{"remark":"short \u12"}"#,
        br#"{"remark":"pair \ud83d\u0041"}"#,
        br#"{"ext\u0046ields":{"k":"v"}}"#,
        br#"{"c\u006fde":12}"#,
        b"",
        b"   ",
    ] {
        assert_fast_json_agrees(h);
    }
}

proptest! {
    #[test]
    fn fast_json_header_decode_matches_serde(cmd in command(any::<i32>(), any::<i32>())) {
        let mut cmd = cmd;
        cmd.serialize_type = SerializeType::Json;
        let mut buf = BytesMut::new();
        write_json_header(&cmd, &mut buf).unwrap();
        assert_fast_json_agrees(&buf);
        prop_assert_eq!(decode_json_header(&buf).unwrap(), decode_json_header_serde(&buf).unwrap());
    }

    #[test]
    fn fast_json_header_decode_agrees_on_mutated_headers(
        cmd in command(any::<i32>(), any::<i32>()),
        cut in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut buf = BytesMut::new();
        write_json_header(&cmd, &mut buf).unwrap();
        let mut bytes = buf.to_vec();
        let i = cut.index(bytes.len());
        bytes[i] = byte;
        assert_fast_json_agrees(&bytes);
        bytes.truncate(i);
        assert_fast_json_agrees(&bytes);
    }
}

#[test]
fn ext_fields_stay_sorted_unique_and_match_a_btree_map() {
    use std::collections::BTreeMap;
    let mut fields = ExtFields::new();
    let mut model = BTreeMap::new();
    // Sorted appends, out-of-order inserts, replacements and removals.
    let ops = [
        ("b", "1"),
        ("d", "2"),
        ("a", "3"),
        ("c", "4"),
        ("b", "5"),
        ("e", "6"),
        ("a", "7"),
    ];
    for (k, v) in ops {
        assert_eq!(
            fields.insert(k.to_string(), v.to_string()),
            model.insert(k.to_string(), v.to_string()),
            "insert {k}"
        );
    }
    assert_eq!(fields.remove("c"), model.remove("c"));
    assert_eq!(fields.remove("zz"), None);
    let got: Vec<_> = fields.iter().collect();
    let want: Vec<_> = model
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(fields.len(), 4);
    assert_eq!(fields.get("b"), Some("5"));
    assert!(fields.get("c").is_none() && !fields.contains_key("c"));
    assert_eq!(ExtFields::from(model.clone()), fields);
    assert_eq!(
        model.clone().into_iter().rev().collect::<ExtFields>(),
        fields
    );
    // Formatted values land in the arena; a replaced value is no longer visible anywhere.
    let mut formatted = ExtFields::from(model);
    formatted.insert_display("b", 42i64);
    formatted.insert_display("0", -1);
    assert_eq!(formatted.get("b"), Some("42"));
    assert_eq!(
        formatted.keys().collect::<Vec<_>>(),
        ["0", "a", "b", "d", "e"]
    );
    assert_eq!(
        formatted.values().collect::<Vec<_>>(),
        ["-1", "7", "42", "2", "6"]
    );
    assert_eq!(
        format!("{formatted:?}"),
        r#"{"0": "-1", "a": "7", "b": "42", "d": "2", "e": "6"}"#
    );
}
