//! The capture interface of a flow reaches the local dashboard's connection detail: a flow
//! record with `iface` sets it on its connection; one without leaves the field out.

use engine::judge::Config;
use engine::{Endpoint, Record};

use super::{NOW, assessment};
use crate::web::{Limits, LiveView};

fn flow(id: u64, local_port: u16, iface: Option<&str>) -> Record {
    let mut f = store::sqlite::testdata::flow(id, NOW, 1);
    f.proto = 6;
    f.client = Endpoint {
        ip: "10.0.0.2".parse().unwrap(),
        port: local_port,
    };
    f.server = Endpoint {
        ip: "93.184.216.34".parse().unwrap(),
        port: 443,
    };
    f.iface = iface.map(Into::into);
    Record::Flow(f)
}

#[test]
fn connection_detail_shows_the_flows_interface() {
    let v = LiveView::new(Config::default(), None, Limits::default());
    v.on_record(
        &flow(1, 40500, Some("wlan0")),
        &assessment(0, "Example Org", None),
        NOW,
    );
    v.on_record(&flow(2, 40501, None), &assessment(0, "Example Org", None), NOW);
    let with = v
        .connection_json("tcp|10.0.0.2:40500|93.184.216.34:443")
        .expect("the connection of flow 1");
    assert_eq!(with["iface"], "wlan0", "{with}");
    let without = v
        .connection_json("tcp|10.0.0.2:40501|93.184.216.34:443")
        .expect("the connection of flow 2");
    assert!(without.get("iface").is_none(), "{without}");
    // The list carries it too.
    let list = v.connections_json(true);
    assert!(list.contains("\"iface\":\"wlan0\""), "{list}");
}
