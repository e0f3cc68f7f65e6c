// placeholder until the limiter bench lands
fn main() {}
